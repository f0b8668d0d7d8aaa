"""Temp folders and files beside a target, that nobody else can redirect and that a killed
writer's successor can clean up.

Every temp path this toolkit writes lies in a folder made by `tempfile.mkdtemp` (exclusive
creation, an unpredictable name, mode 0700) beside its target, so no name can be planted in
advance: a symlink or file placed where a temp file will go does not exist, because the name is
not known before the folder is made, and inside the folder nobody else can create anything.

A writer holds an exclusive `flock` on its folder while it works; the folder is then renamed to
`.NAME.KIND-PID-RAND` (the PID only says who made it). A leftover is whatever folder of that
pattern no process holds a lock on: the lock goes with its holder, whatever machine or container
that runs in, where a PID says nothing about another container sharing the volume.

    with staging.replacing(target) as tmp:   # write tmp; on success it replaces target
        tmp.write_text(...)
    with staging.locked_dir(target, "partial") as folder: ...   # a locked work folder
    staging.remove_leftovers(target, "partial")                 # those nobody holds
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from toolkit.io.files import fcntl, public, target_named

TMP = "tmp"


def leftovers(target: Path, kind: str) -> list[Path]:
    """Every `.NAME.KIND-PID-RAND` folder beside `target` (not links), newest first."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.{re.escape(kind)}-\d+-[0-9a-z_]+$")
    found = []
    if target.parent.is_dir():
        for path in target.parent.iterdir():
            if pattern.match(path.name) and path.is_dir() and not path.is_symlink():
                found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


@contextmanager
def claimed(folder: Path) -> Iterator[bool]:
    """Try to take `folder`'s lock for the block: True when nobody held it (a leftover), False
    while a writer holds it (or it vanished). Without flock (Windows) nothing is claimed."""
    if fcntl is None:
        yield False
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def remove_leftovers(target: Path, kind: str) -> None:
    """Delete the `kind` folders beside `target` that no process holds."""
    for folder in leftovers(target, kind):
        with claimed(folder) as free:
            if free:
                shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def pinned(folder: Path) -> Iterator[None]:
    """Hold a shared lock on `folder` for the block, so that `claimed` sees it in use (a lock
    someone already holds, e.g. the CLI's on its output, serves as well)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if fcntl is not None:
            with suppress(BlockingIOError):  # held exclusively already: in use all the same
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


@contextmanager
def locked_dir(target: Path, kind: str) -> Iterator[Path]:
    """A fresh private folder `.NAME.KIND-PID-RAND` beside `target`, locked while the block
    runs and removed afterwards (when it is still there: the block may rename it away)."""
    parent = target.parent
    made = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=parent))
    fd = os.open(made, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Named after the lock is taken, so a cleaner never finds it unlocked.
        folder = parent / f".{target.name}.{kind}-{os.getpid()}-{made.name.rsplit('-', 1)[-1]}"
        os.rename(made, folder)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)
        shutil.rmtree(made, ignore_errors=True)


@contextmanager
def replacing(target) -> Iterator[Path]:
    """A temp path for the new content of file `target`; when the block ends without an error
    it is renamed over `target` (a link there is replaced, never followed) with the permissions
    of a plain new file. An output error names `target`; leftovers nobody holds are removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target, TMP)
    with target_named(target), locked_dir(target, TMP) as folder:
        tmp = folder / target.name
        yield tmp
        public(tmp)
        os.replace(tmp, target)
