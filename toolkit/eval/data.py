"""Reading local CSV / JSONL inputs row by row, with the file and line of every row.

A malformed row is either skipped (reported in the results as `file:line: reason`) or raises
`DataError` naming the file, the line and the problem, per `on_bad_row`; never scored silently.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import DataError


@dataclass
class BadRows:
    """Collects skipped rows; raises at the first one when the policy is 'error'."""

    policy: str
    skipped: list[str] = field(default_factory=list)

    def report(self, path: Path, line: int, reason: str) -> None:
        where = f"{path}:{line}: {reason}"
        if self.policy == "error":
            raise DataError(f"{where} (fix the row, or set eval.on_bad_row=skip to skip it)")
        self.skipped.append(where)


def _open(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {str(p)!r} does not exist; set eval.data_path to a local file")
    return p


def csv_columns(path: str | Path) -> list[str]:
    """The header row of a CSV file."""
    p = _open(path)
    with p.open(newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def csv_rows(path: str | Path, required: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line of the record, row) for every record; a missing column fails the file."""
    p = _open(path)
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{p}:1: missing column(s) {', '.join(missing)}; the header must have "
                f"{', '.join(required)}"
            )
        start = reader.line_num + 1
        for row in reader:
            yield start, row
            start = reader.line_num + 1


def jsonl_rows(path: str | Path, bad: BadRows) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; lines that are not JSON objects are bad."""
    p = _open(path)
    with p.open(encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                bad.report(p, number, f"not valid JSON ({err.msg})")
                continue
            if not isinstance(obj, dict):
                bad.report(p, number, "not a JSON object")
                continue
            yield number, obj


def parse_rows(
    rows: Iterator[tuple[int, Any]],
    path: str | Path,
    parse: Callable[[Any], Any],
    bad: BadRows,
    limit: int | None = None,
) -> list[Any]:
    """Apply `parse` (raising ValueError with a reason on a bad row) to each row, up to `limit`."""
    items = []
    for line, row in rows:
        if limit is not None and len(items) >= limit:
            break
        try:
            item = parse(row)
        except (ValueError, KeyError, TypeError) as err:
            bad.report(Path(path), line, str(err))
            continue
        item["line"] = line
        items.append(item)
    if not items:
        raise DataError(f"{path}: no usable rows; check the file's format")
    return items
