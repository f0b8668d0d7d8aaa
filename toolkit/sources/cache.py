"""Entries of the model cache (`$SURGERY_CACHE/NAME`): published whole, told apart from
folders the toolkit did not write, rebuilt when damaged, and the leftovers of killed builds
removed.

An entry is built in a private staging folder `.NAME.prep-PID-RAND` beside it, locked while
its writer runs (`toolkit.io.staging.locked_dir`), then renamed into place. A build killed
before the rename (SIGKILL, power loss) leaves that folder unlocked; the next use of the entry
removes it, while a folder whose writer still holds its lock is left alone.

Every entry the toolkit writes lists its files and their sizes in `MARKER`. What a folder at
the entry's name is:

- `READY`: it has config.json and, when it has the marker, every listed file at its size (a
  folder without the marker is a model directory someone put there, used as it is);
- `DAMAGED`: the marker, but a listed file is missing or has another size: built again;
- `FOREIGN`: no marker and no config.json, yet something is there: refused, never deleted;
- `MISSING`: nothing, or an empty folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from toolkit.core.errors import ToolkitError
from toolkit.io import json_reader, staging
from toolkit.io.files import public_tree

CACHE_ENV = "SURGERY_CACHE"
MARKER = ".model-surgery-entry.json"
KIND = "prep"
READY, DAMAGED, FOREIGN, MISSING = "ready", "damaged", "foreign", "missing"


class CacheEntryError(ToolkitError):
    """A folder in the model cache that the toolkit did not write is where an entry goes."""


def state(target: Path) -> str:
    """What the folder at `target` is (module docstring): READY, DAMAGED, FOREIGN or MISSING."""
    if not target.is_symlink() and not target.exists():
        return MISSING
    has_config = (target / "config.json").is_file()
    if target.is_symlink() or not target.is_dir():  # never ours: used if a model, else refused
        return READY if has_config else FOREIGN
    if not (target / MARKER).is_file():
        if has_config:
            return READY
        return FOREIGN if any(target.iterdir()) else MISSING
    listed = _listed(target)
    whole = "config.json" in listed and all(_size(target / name) == size
                                            for name, size in listed.items())
    return READY if whole else DAMAGED


def remove_leftovers(target: Path) -> None:
    """Delete the staging folders of `target` that no writer holds (builds that were killed)."""
    staging.remove_leftovers(target, KIND)


def publish_to_cache(target: Path, build: Callable[[Path], object],
                     ready: Callable[[Path], bool]) -> bool:
    """Build the cache entry `target` in a locked staging folder beside it, then rename it into
    place. The staging folder is removed whatever happens (Ctrl-C too; after SIGKILL, by the
    next call). A damaged entry the toolkit wrote is replaced; a foreign one is refused.

    Args:
        target: the cache directory to publish.
        build: fills the staging directory; returning False means "not built" (nothing published).
        ready: whether `target` is a complete entry, used when another process won the rename.

    Returns:
        True when `target` now holds the entry, False when `build` declined.

    Raises:
        CacheEntryError: a folder the toolkit did not write, without config.json, is at `target`.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    found = state(target)
    if found == FOREIGN:
        raise _foreign(target)
    if found == DAMAGED:
        _discard(target)
    with staging.locked_dir(target, KIND) as folder:
        if build(folder) is False:
            return False
        _mark(folder)
        public_tree(folder)  # mkdtemp and safetensors make them private; a cache is not
        try:
            os.rename(folder, target)
        except OSError:
            if ready(target):  # another process won the race
                return True
            if state(target) == FOREIGN:
                raise _foreign(target) from None
            raise
        return True


def _foreign(target: Path) -> CacheEntryError:
    return CacheEntryError(
        f"{target} is in the model cache, but the toolkit did not write it and it has no "
        f"config.json; remove that folder (or move it away) and run again, or set ${CACHE_ENV} "
        "to use another cache"
    )


def _discard(target: Path) -> None:
    """Move a damaged entry into a locked staging folder and delete it there (a kill halfway
    leaves a leftover that the next call removes, never a half-deleted entry at `target`)."""
    with staging.locked_dir(target, KIND) as aside, suppress(FileNotFoundError):
        os.rename(target, aside / "damaged")  # FileNotFoundError: another process was first


def _mark(folder: Path) -> None:
    files = {p.relative_to(folder).as_posix(): p.stat().st_size
             for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / MARKER).write_text(json.dumps({"files": files}, indent=1) + "\n")


def _listed(target: Path) -> dict[str, int]:
    """The marker's {relative name: size}; {} when it cannot be read or names paths outside."""
    try:
        files = json_reader.load(target / MARKER)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(files, dict) or not all(
            isinstance(size, int) and not Path(name).is_absolute() and ".." not in Path(name).parts
            for name, size in files.items()):
        return {}
    return files


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None
