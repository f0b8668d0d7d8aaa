"""Reading CSV inputs row by row (JSONL goes through `toolkit.io.jsonl`), with the file and
line of every row; a Parquet file or a `datasets` id (`toolkit.io.tables`) with the same columns
reads the same way, its rows numbered from 1.

A malformed row is either skipped (reported in the results as `file:line: reason`) or raises
`DataError` naming the file, the line and the problem, per `on_bad_row` (a `BadRows` policy);
never scored silently.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from toolkit.core.errors import DataError
from toolkit.io import tables
from toolkit.io.jsonl import BadRows, existing_file

__all__ = ["BadRows", "csv_columns", "csv_rows", "parse_rows"]
KEY = "eval.data_path"


def csv_columns(path: str | Path) -> list[str]:
    """The header row of a CSV file (a table's column names)."""
    if tables.is_table(path):
        return tables.table_columns(path, KEY)
    p = existing_file(path, KEY)
    with p.open(newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def csv_rows(path: str | Path, required: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line of the record, row) for every record; a missing column fails the file."""
    if tables.is_table(path):
        yield from _table_rows(path, required)
        return
    p = existing_file(path, KEY)
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


def _table_rows(path, required: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, row in tables.table_rows(path, KEY):
        missing = [c for c in required if c not in row]
        if missing:
            raise DataError(f"{path}:{number}: missing column(s) {', '.join(missing)}; the "
                            f"rows must have {', '.join(required)}")
        yield number, row


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
