"""What produced a resumable output file, recorded beside it in `<file>.producer.json`.

A producer is a JSON object (model fingerprint, decoding or collection settings, seed, grid).
The first run writes it before its first record; a rerun resumes only under an equal producer,
otherwise it stops with one line naming what differs, unless `force` is given, which appends
the new producer to the list (the file then honestly says it has several).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from toolkit.errors import DataError


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
        data = json.loads(side.read_text(encoding="utf-8"))
        producers = data["producers"]
        if not isinstance(producers, list) or not all(isinstance(p, dict) for p in producers):
            raise ValueError("producers is not a list of objects")
        return producers
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{side} is unreadable ({err}); delete it only if you know what wrote "
                        "the file beside it") from None


def _write(side: Path, producers: list[dict]) -> None:
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"producers": producers}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, side)


def check(path, producer: dict, *, has_records: bool, key: str, force: bool = False) -> None:
    """Record `producer` for a new file, or refuse to append to one made by another producer
    (or by an unknown one, when records exist without a sidecar) unless `force`."""
    side = sidecar(path)
    producer = json.loads(json.dumps(producer, sort_keys=True))
    if not side.exists():
        if has_records and not force:
            raise DataError(
                f"{path} already holds records but no record of what produced them ({side.name} "
                f"is missing); set {key}=true to append anyway, or write to a new file"
            )
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
