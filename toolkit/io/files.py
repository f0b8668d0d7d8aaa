"""File-system guards shared by every job: writability probes, exclusive locks.

Outputs are checked before any model loads (`check_writable`: a FIFO, device or socket is no
output), every writer holds an exclusive lock on each file or folder it writes (`hold`,
`exclusive`; a second writer is refused with one line), files written through a private temp
file get the permissions of a plain new file (`public`), and a write that fails names the
user's path, not the temp file (`target_named`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from toolkit.core.errors import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; locking is then skipped
    fcntl = None

# Below this many free bytes an output disk counts as full.
MIN_FREE_BYTES = 1 << 20
# OSError numbers that mean "this output cannot be written", reported as one line by the CLI.
OUTPUT_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
                 errno.ENOTDIR, errno.EISDIR)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def check_writable(path, key: str, *, is_dir: bool = False) -> None:
    """Raise DataError unless `path` (a file, or a directory when `is_dir`) can be written:
    its nearest existing folder accepts a new file and its disk is not full. Creates nothing."""
    path = Path(path).absolute()
    special = _special(path)
    if special:
        raise DataError(f"{key}={str(path)!r} is {special}, not a regular file or folder; give "
                        f"a {'directory' if is_dir else 'file'} path")
    if path.exists() and path.is_dir() != is_dir:
        kind = "a directory" if path.is_dir() else "a file"
        raise DataError(f"{key}={str(path)!r} is {kind}; give a {'directory' if is_dir else 'file'} path")
    folder = _existing_ancestor(path if is_dir else path.parent)
    if not folder.is_dir():
        raise DataError(f"{key}={str(path)!r}: {folder} is a file, not a folder; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
        stats = os.statvfs(folder)
    except OSError as err:
        raise DataError(
            f"{key}={str(path)!r} cannot be written ({os.strerror(err.errno or 0)} in {folder}); "
            "choose a writable location"
        ) from None
    if stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
        raise DataError(
            f"{key}={str(path)!r}: the disk holding {folder} is full; free some space or choose "
            "another location"
        )


def _special(path: Path | int) -> str | None:
    """What `path` (or an open descriptor) is when it exists and is neither a regular file nor
    a folder (links followed): writing a FIFO blocks until a reader comes, a device is no
    output."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    kinds = {stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), None)


# (device, inode) of every file and folder this process holds through `hold`.
_HELD: set[tuple[int, int]] = set()


def _ident(fileno: int) -> tuple[int, int]:
    stat = os.fstat(fileno)
    return stat.st_dev, stat.st_ino


@contextmanager
def exclusive(handle, path, what: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on an open file (or folder) while writing it;
    DataError naming `path` and the recipe key `what` when another holder has it. Inside a
    `hold` of the same file this process already has the lock."""
    fileno = handle if isinstance(handle, int) else handle.fileno()
    if fcntl is None or _ident(fileno) in _HELD:
        yield
        return
    try:
        fcntl.flock(fileno, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        kind = "folder" if os.path.isdir(path) else "file"
        raise DataError(
            f"{path} is being written by another process; wait for it to finish or set {what} "
            f"to another {kind}"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fileno, fcntl.LOCK_UN)


@contextmanager
def hold(path, what: str, *, is_dir: bool = False) -> Iterator[None]:
    """Lock the file or folder `path` (created empty when missing) for this process's writes
    (the `exclusive` locks taken inside share it); DataError when another process holds it. A
    folder it created that is still empty at the end is removed."""
    path = Path(path)
    created = not path.exists()
    if is_dir:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_NONBLOCK: a FIFO put there since the checks must not hang the run
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK, 0o666)
        special = _special(fd)
        if special:
            os.close(fd)
            raise DataError(f"{what}={str(path)!r} is {special}, not a regular file; give a "
                            "file path")
    try:
        with exclusive(fd, path, what):
            ident = _ident(fd)
            outer = ident not in _HELD
            _HELD.add(ident)
            try:
                yield
            finally:
                if outer:
                    _HELD.discard(ident)
    finally:
        os.close(fd)
        if is_dir and created:
            with suppress(OSError):
                path.rmdir()  # fails unless the folder is still empty


def sha256_file(path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public(path, *, is_dir: bool = False) -> None:
    """Give `path` the permissions a plain new file (or folder) gets, 0666 (0777) less the
    umask: temp-file writers (mkstemp, safetensors) create them private (0600)."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def public_tree(directory) -> None:
    """`public` for `directory` and everything under it."""
    public(directory, is_dir=True)
    for root, dirs, names in os.walk(directory):
        for name in dirs:
            public(os.path.join(root, name), is_dir=True)
        for name in names:
            public(os.path.join(root, name))


@contextmanager
def target_named(target) -> Iterator[None]:
    """Re-raise an output OSError (disk full, read-only, ...) as one naming `target`, the
    user's path, instead of the temp file written on its way there."""
    try:
        yield
    except OSError as err:
        if err.errno not in OUTPUT_ERRNOS:
            raise
        raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(target)) from None
