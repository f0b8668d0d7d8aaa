"""Preference-pair JSONL IO: prompt loading, pair selection, append-safe resumable writing.

Every record is one JSON line written with a single `write` + flush + fsync, so an interruption
can leave at most a torn last line; readers detect it, warn and drop it (writers truncate it
before appending), and never corrupt earlier lines.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path

from toolkit.errors import DataError
from toolkit.jsonl import jsonl_values

PAIR_FIELDS = ("id", "prompt_ids", "chosen_ids", "rejected_ids", "chosen_tau", "rejected_tau")


def dropped_path(pairs_path) -> Path:
    """Sidecar listing prompts whose rewards were all equal (so a rerun skips them too)."""
    path = Path(pairs_path)
    return path.with_name(path.name + ".dropped.jsonl")


def parse_prompt(obj, path, lineno: int) -> dict:
    """One prompt record, checked; `id` defaults to the 0-based position."""
    where = f"{path}:{lineno}"
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object with a 'prompt' field")
    has_text = isinstance(obj.get("prompt"), str)
    ids = obj.get("prompt_ids")
    has_ids = isinstance(ids, list) and ids and all(isinstance(i, int) for i in ids)
    if not (has_text or has_ids):
        raise DataError(
            f"{where}: missing field 'prompt' (a string) or 'prompt_ids' (a list of token ids)"
        )
    record = dict(obj)
    record["id"] = str(obj.get("id", lineno - 1))
    return record


def load_prompts(path) -> list[dict]:
    """Prompt records from a JSONL file; a bad line raises DataError naming file and line."""
    records, seen = [], set()
    with open(path, encoding="utf-8") as fh:
        for lineno, obj in jsonl_values(fh, path):
            record = parse_prompt(obj, path, lineno)
            if record["id"] in seen:
                raise DataError(f"{path}:{lineno}: prompt id {record['id']!r} repeats")
            seen.add(record["id"])
            records.append(record)
    return records


def select_pair(rewards: list[float], rng: random.Random) -> tuple[int, int] | None:
    """(chosen, rejected) = (a best, a worst) reply, ties broken by `rng`; None if all equal."""
    best, worst = max(rewards), min(rewards)
    if best == worst:
        return None
    chosen = rng.choice([i for i, r in enumerate(rewards) if r == best])
    rejected = rng.choice([i for i, r in enumerate(rewards) if r == worst])
    return chosen, rejected


def _split_tail(data: bytes) -> tuple[bytes, bytes]:
    """(complete lines, torn tail) of a JSONL file's bytes."""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def repair_tail(path) -> None:
    """Truncate a torn last line (left by an interruption) before appending, with a warning."""
    path = Path(path)
    if not path.exists():
        return
    complete, tail = _split_tail(path.read_bytes())
    if tail:
        warnings.warn(
            f"{path}: dropping a torn last line ({len(tail)} bytes) left by an interrupted run",
            stacklevel=2,
        )
        with open(path, "r+b") as fh:
            fh.truncate(len(complete))


def read_records(path) -> list[dict]:
    """All complete records of a JSONL file; a torn last line is ignored with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    complete, tail = _split_tail(path.read_bytes())
    if tail:
        warnings.warn(f"{path}: ignoring a torn last line ({len(tail)} bytes)", stacklevel=2)
    return [obj for _, obj in jsonl_values(complete.decode("utf-8").splitlines(), path)]


def read_pairs(path) -> list[dict]:
    """The pair records of a pairs file, checked for the fields training needs."""
    pairs = read_records(path)
    for lineno, pair in enumerate(pairs, start=1):
        missing = [k for k in PAIR_FIELDS if k not in pair]
        if missing:
            raise DataError(f"{path}, record {lineno}: missing field(s) {', '.join(missing)}")
    if not pairs:
        raise DataError(f"{path} holds no preference pairs; run the collection first")
    return pairs


def done_ids(pairs_path) -> set[str]:
    """Prompt ids already handled: written as a pair or recorded as dropped."""
    records = read_records(pairs_path) + read_records(dropped_path(pairs_path))
    return {str(r["id"]) for r in records}


def append_record(fh, record: dict) -> None:
    """Write one record as one line with a single write, then flush and fsync."""
    fh.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    fh.flush()
    os.fsync(fh.fileno())
