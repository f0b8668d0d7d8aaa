"""What produced a resumable output file, recorded beside it in `<file>.producer.json`.

A producer is a JSON object (model fingerprint, decoding or collection settings, seed, grid).
The first run writes it before its first record; a rerun resumes only under an equal producer,
otherwise it stops with one line naming what differs, unless `force` is given, which appends
the new producer to the list (the file then honestly says it has several). A non-empty file
without a sidecar is not ours: it is refused before any byte of it changes (callers read the
file, then `check`, then repair a torn last line), and under `force` one whose last line has no
newline is refused rather than cut.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from toolkit.core.errors import DataError
from toolkit.io import json_reader
from toolkit.io.staging import replacing


def sidecar(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".producer.json")


def _flat(value: Any, key: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {key: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(_flat(v, f"{key}.{k}" if key else str(k)))
    return out


def _differences(old: dict, new: dict) -> list[str]:
    old, new = _flat(old), _flat(new)
    keys = sorted(set(old) | set(new))
    return [f"{k}: {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys
            if old.get(k) != new.get(k)]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 24 else text[:12] + "..."


def _read(side: Path) -> list[dict]:
    try:
        data = json_reader.load(side)
        producers = data["producers"]
        if not isinstance(producers, list) or not all(isinstance(p, dict) for p in producers):
            raise ValueError("producers is not a list of objects")
        return producers
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{side} is unreadable ({err}); delete it only if you know what wrote "
                        "the file beside it") from None


def _write(side: Path, producers: list[dict]) -> None:
    with replacing(side) as tmp:
        tmp.write_text(json.dumps({"producers": producers}, indent=2, sort_keys=True) + "\n",
                       encoding="utf-8")


def record(path, producer: dict) -> None:
    """Record `producer` as the only one of `path`, which it has just written as a whole."""
    _write(sidecar(path), [json.loads(json.dumps(producer, sort_keys=True))])


def owned(path, key: str, force: bool = False) -> None:
    """Refuse a non-empty `path` without a producer sidecar (unless `force`): it holds
    something this toolkit did not write. Reads nothing but the file's size; creates nothing."""
    path = Path(path)
    if not force and not sidecar(path).exists() and path.is_file() and path.stat().st_size:
        raise DataError(
            f"{path} is not empty but has no record of what produced it ({sidecar(path).name} "
            f"is missing), so this toolkit did not write it; write to a new file, or set "
            f"{key}=true to append to it anyway"
        )


def _ends_in_newline(path: Path) -> None:
    """Refuse a file another program wrote whose last line has no newline: appending would
    glue a record to it, and dropping it as a torn line would lose the user's bytes."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                raise DataError(
                    f"{path} was not written by this toolkit and its last line has no newline; "
                    "end it with a newline, or write to a new file"
                )


def check(path, producer: dict, *, key: str, force: bool = False) -> None:
    """Record `producer` for a new file, or refuse to append to one made by another producer
    (or by an unknown one: a non-empty file without a sidecar) unless `force`. Changes nothing
    but the sidecar; afterwards the file is ours, so a torn last line may be repaired."""
    side = sidecar(path)
    producer = json.loads(json.dumps(producer, sort_keys=True))
    if not side.exists():
        owned(path, key, force)
        _ends_in_newline(Path(path))
        _write(side, [producer])
        return
    producers = _read(side)
    if all(p == producer for p in producers):
        return
    if not force:
        changed = "; ".join(_differences(producers[-1], producer))
        raise DataError(
            f"{path} was written by another producer ({changed}); resuming would mix the two: "
            f"write to a new file, or set {key}=true to append anyway"
        )
    if producer not in producers:
        _write(side, producers + [producer])
