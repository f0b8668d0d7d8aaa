"""Preference-pair JSONL IO: prompt loading, pair selection, append-safe resumable writing.

Every record is one JSON line written with a single `write` + flush + fsync, so an interruption
can leave at most a torn last line; readers detect it, warn and drop it (writers truncate it
before appending), and never corrupt earlier lines.
"""

from __future__ import annotations

import random
from pathlib import Path

from toolkit.core.errors import DataError
from toolkit.io.jsonl import append_record, read_numbered, read_prompts, read_records, repair_tail

__all__ = ["append_record", "read_records", "repair_tail"]

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
    if obj.get("prompt") == "" and not obj.get("prompt_ids"):
        raise DataError(f"{where}: the prompt is empty; give some text to continue")
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
    for lineno, obj in read_prompts(path, "prompt", token_ids=True):
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


def read_pairs(path, vocab_size: int | None = None, grid_size: int | None = None,
               max_positions: int | None = None) -> list[dict]:
    """The pair records of a pairs file, checked for the fields training needs, one record per
    prompt id, non-empty prompt and replies, one temperature index per reply token, and (when
    given) token ids < `vocab_size`, temperature indices < `grid_size` and prompt + reply within
    `max_positions`. Every problem is a DataError naming the file and line."""
    numbered = read_numbered(path)
    seen: dict[str, int] = {}
    for lineno, pair in numbered:
        where = f"{path}:{lineno}"
        if not isinstance(pair, dict):
            raise DataError(f"{where}: expected a JSON object")
        missing = [k for k in PAIR_FIELDS if k not in pair]
        if missing:
            raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
        key = str(pair["id"])
        if key in seen:
            raise DataError(
                f"{where}: prompt id {key!r} repeats line {seen[key]} (two collections wrote to "
                "one file?); keep one pair per prompt or collect again into a new file"
            )
        seen[key] = lineno
        _check_ranges(pair, where, vocab_size, grid_size)
        _check_consistent(pair, where, max_positions)
    if not numbered:
        raise DataError(f"{path} holds no preference pairs; run the collection first")
    return [pair for _, pair in numbered]


def _check_consistent(pair: dict, where: str, max_positions: int | None) -> None:
    again = "; collect the pairs again (data.pairs to a new file) or drop this line"
    for name in ("prompt_ids", "chosen_ids", "rejected_ids"):
        if not pair[name]:
            raise DataError(f"{where}: {name} is empty, so the pair teaches nothing{again}")
    for side in ("chosen", "rejected"):
        ids, tau = pair[f"{side}_ids"], pair[f"{side}_tau"]
        if len(tau) != len(ids):
            raise DataError(
                f"{where}: {side}_tau holds {len(tau)} temperature indices for {len(ids)} "
                f"{side}_ids tokens; there must be one per token{again}"
            )
    longest = len(pair["prompt_ids"]) + max(len(pair["chosen_ids"]), len(pair["rejected_ids"]))
    if max_positions and longest > max_positions:
        raise DataError(
            f"{where}: prompt and reply hold {longest} tokens, past the model's {max_positions} "
            "positions; collect the pairs again (data.pairs to a new file) with shorter prompts "
            "or a lower collect.max_new_tokens, or drop this line"
        )


def _check_ranges(pair: dict, where: str, vocab_size: int | None, grid_size: int | None) -> None:
    limits = {"prompt_ids": ("token id", vocab_size), "chosen_ids": ("token id", vocab_size),
              "rejected_ids": ("token id", vocab_size),
              "chosen_tau": ("temperature index", grid_size),
              "rejected_tau": ("temperature index", grid_size)}
    for name, (what, limit) in limits.items():
        values = pair[name]
        if not isinstance(values, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise DataError(f"{where}: {name} must be a list of integers; collect the pairs "
                            "again (data.pairs to a new file) or drop this line")
        bad = [v for v in values if v < 0 or (limit is not None and v >= limit)]
        if bad:
            bound = f"0..{limit - 1}" if limit is not None else ">= 0"
            raise DataError(
                f"{where}: {name} holds {what} {bad[0]}, outside {bound}; the pairs were "
                "collected with another model or temperature grid"
            )


def done_ids(pairs_path) -> set[str]:
    """Prompt ids already handled: written as a pair or recorded as dropped."""
    done = set()
    for path in (Path(pairs_path), dropped_path(pairs_path)):
        for number, record in enumerate(read_records(path), start=1):
            if not isinstance(record, dict) or "id" not in record:
                raise DataError(f"{path}: record {number} is not a pair with an 'id'; this is "
                                "not a pairs file: set data.pairs to a new file")
            done.add(str(record["id"]))
    return done
