"""Report files (eval, bench, the `run` figures) that land in a folder a user names: replaced
only when this toolkit wrote them, the rule checkpoints follow (`toolkit.io.layout`).

Beside the reports, `.surgery-reports.json` lists every file this toolkit wrote there with its
SHA-256. A report may be written when it is absent, or when the list holds it with the hash it
still has; a user's file of the same name, or a report edited since, is refused (`check`, run
before any model loads, and again by `write`). Each file goes to a temp file in the same folder
first (in a private folder, `toolkit.io.staging`) and is renamed over the old one, so a failure
leaves the old report or the new one, and nothing planted in the folder can redirect the write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from toolkit.core.errors import DataError
from toolkit.io import json_reader
from toolkit.io.files import sha256_file
from toolkit.io.staging import replacing

MANIFEST = ".surgery-reports.json"


def _written(directory: Path) -> dict[str, str]:
    """name -> SHA-256 of the reports this toolkit wrote in `directory` ({} when none)."""
    try:
        listed = json_reader.load(directory / MANIFEST)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {k: v for k, v in listed.items() if isinstance(v, str)} if isinstance(listed, dict) else {}


def _refusal(directory: Path, name: str, key: str) -> DataError:
    return DataError(
        f"{key}={str(directory)!r} holds {name}, which this toolkit did not write (or which "
        f"changed since it did); move it away or set {key} to another folder"
    )


def check(directory, names: Iterable[str], key: str) -> None:
    """Refuse when a report `names` would replace is not one this toolkit wrote, unchanged."""
    directory = Path(directory)
    written = _written(directory) if directory.is_dir() else {}
    for name in names:
        path = directory / name
        if path.is_symlink() or (path.exists() and (
                not path.is_file() or written.get(name) != sha256_file(path))):
            raise _refusal(directory, name, key)


def write(directory, name: str, key: str, writer: Callable[[Path], object]) -> Path:
    """Write report `name` in `directory` through `writer(temp path)`, then rename it into place
    and record its hash; refused (nothing written) when the file there is not ours."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    check(directory, [name], key)
    path = directory / name
    with replacing(path) as tmp:
        writer(tmp)
    written = _written(directory)
    written[name] = sha256_file(path)
    _write_manifest(directory, written)
    return path


def write_text(directory, name: str, key: str, text: str) -> Path:
    """`write` for a UTF-8 text report."""
    return write(directory, name, key, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_manifest(directory: Path, written: dict[str, str]) -> None:
    with replacing(directory / MANIFEST) as tmp:
        tmp.write_text(json.dumps({"files": written}, indent=1, sort_keys=True) + "\n",
                       encoding="utf-8")
