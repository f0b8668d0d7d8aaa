"""Replace a directory so that a crash at any point leaves the old one or the new one, never
neither, and clean up what killed processes left behind.

A save writes everything into `.NAME.partial-PID-RAND` beside the target, then swaps it in.
On Linux one `renameat2(RENAME_EXCHANGE)` exchanges the two directories in a single step, and
the old content (now under the partial name) is deleted. Where that call is missing, two renames
with `.NAME.old-PID-RAND` in between; a failure of the second puts the old directory back, and
`recover` restores an old directory that a kill between the two renames left without a target.
The writer holds a lock on each of those folders while it works (`toolkit.io.staging`): only
folders nobody holds are leftovers, whatever the PID in their name says (a writer in another
container sharing the volume has a PID this machine does not know).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from toolkit.io.staging import claimed, leftovers, locked_dir, pinned, remove_leftovers

PARTIAL = "partial"
OLD = "old"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2():
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two existing paths; False when the system cannot (then nothing moved)."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(code, os.strerror(code), str(b))


def sidecar(target: Path, kind: str) -> Path:
    """A fresh `.NAME.KIND-PID-RAND` path beside `target`."""
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def recover(target: Path, is_complete: Callable[[Path], bool]) -> None:
    """Put back an old directory a killed save left without a target; delete the partial and
    old directories nobody holds (an old one only once it is redundant)."""
    for path in leftovers(target, OLD):
        with claimed(path) as free:
            if not free or not is_complete(path):
                continue
            if not target.exists():
                os.rename(path, target)
            else:
                shutil.rmtree(path, ignore_errors=True)
    remove_leftovers(target, PARTIAL)


def swap_in(tmp: Path, target: Path) -> None:
    """Make `tmp` the content of `target`; afterwards `tmp` holds the old content (or is gone)."""
    if not target.exists():
        os.rename(tmp, target)
        return
    if exchange(tmp, target):
        return
    old = sidecar(target, OLD)
    with pinned(target):  # the old content stays locked while it sits under the old name
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
        os.rename(old, tmp)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh partial directory beside `target`; on success it replaces `target`.
    Whatever happens (an error, Ctrl-C, SystemExit) the partial directory does not stay."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked_dir(target, PARTIAL) as tmp:
        yield tmp
        swap_in(tmp, target)
