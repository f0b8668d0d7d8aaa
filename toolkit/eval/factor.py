"""FACTOR-style multiple choice: a prefix, one true completion and N contradictions.

Each completion is scored as the continuation `' ' + completion` of `full_prefix` (the
reference `factor_eval.py`). An item is correct when the true completion's score is not below
any contradiction's: the reference counts a tie as correct (`if true < false: wrong`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from toolkit.core.errors import DataError
from toolkit.eval.data import BadRows, csv_columns, csv_rows, parse_rows

_CONTRADICTION = re.compile(r"^contradiction_(\d+)$")
METRICS = ("accuracy",)


def _contradiction_columns(path: str) -> list[str]:
    cols = sorted((c for c in csv_columns(path) if _CONTRADICTION.match(c)),
                  key=lambda c: int(_CONTRADICTION.match(c).group(1)))
    if not cols:
        raise DataError(f"{path}:1: no contradiction_0.. columns; FACTOR rows need at least one")
    return cols


def load(path: str, bad: BadRows, limit: int | None = None) -> list[dict[str, Any]]:
    """Items {prefix, completion, contradictions, line} from a FACTOR-format CSV."""
    columns = _contradiction_columns(path)

    def parse(row: dict[str, str]) -> dict[str, Any]:
        prefix = row.get("full_prefix") or ""
        completion = (row.get("completion") or "").strip()
        if not prefix.strip():
            raise ValueError("empty full_prefix")
        if not completion:
            raise ValueError("empty completion")
        contradictions = [(row.get(c) or "").strip() for c in columns]
        empty = [c for c, text in zip(columns, contradictions, strict=True) if not text]
        if empty:
            raise ValueError(f"empty {', '.join(empty)}")
        return {"prefix": prefix, "completion": completion, "contradictions": contradictions}

    return parse_rows(csv_rows(path, ["full_prefix", "completion"] + columns), path, parse, bad,
                      limit)


def pairs(item: dict[str, Any]) -> list[tuple[str, str]]:
    """(prompt, continuation): the true completion first, then the contradictions."""
    return [(item["prefix"], " " + c) for c in [item["completion"]] + item["contradictions"]]


def is_correct(score_true: float, scores_false: Sequence[float]) -> bool:
    return all(score_true >= s for s in scores_false)


def item_result(item: dict[str, Any], scores: list[float]) -> dict[str, Any]:
    return {
        "score_true": scores[0],
        "scores_false": scores[1:],
        "accuracy": float(is_correct(scores[0], scores[1:])),
    }
