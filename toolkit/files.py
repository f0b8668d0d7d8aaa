"""File-system guards shared by every job: writability probes, exclusive locks, process checks.

Outputs are checked before any model loads (`check_writable`), long-running writers hold an
exclusive lock on the file they append to (`exclusive`), and leftovers of killed processes are
recognised by the process id in their names (`pid_alive`).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toolkit.errors import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; locking is then skipped
    fcntl = None

# Below this many free bytes an output disk counts as full.
MIN_FREE_BYTES = 1 << 20
# OSError numbers that mean "this output cannot be written", reported as one line by the CLI.
OUTPUT_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
                 errno.ENOTDIR, errno.EISDIR)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def check_writable(path, key: str, *, is_dir: bool = False) -> None:
    """Raise DataError unless `path` (a file, or a directory when `is_dir`) can be written:
    its nearest existing folder accepts a new file and its disk is not full. Creates nothing."""
    path = Path(path).absolute()
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


@contextmanager
def exclusive(handle, path, what: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on an open file while writing it."""
    if fcntl is None:
        yield
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DataError(
            f"{path} is being written by another process; wait for it to finish or set {what} "
            "to another file"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
