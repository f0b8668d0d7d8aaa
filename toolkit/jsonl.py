"""JSONL files: one JSON value per non-blank line, errors naming file and line; append-safe
writing (one write + fsync per record) and repair of a torn last line, so that long jobs
write as they go and resume.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from toolkit.errors import DataError


def jsonl_values(lines: Iterable[str], path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line; invalid JSON raises DataError."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None


def read_text(path: str | Path) -> str:
    """The file's text as UTF-8; a byte that is not UTF-8 raises DataError naming the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: byte 0x{data[err.start]:02x} is not UTF-8; save the file as UTF-8"
        ) from None


def split_tail(data: bytes) -> tuple[bytes, bytes]:
    """(complete lines, torn tail) of a JSONL file's bytes."""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def repair_tail(path: str | Path) -> None:
    """Truncate a torn last line (left by an interruption) before appending, with a warning."""
    path = Path(path)
    if not path.exists():
        return
    complete, tail = split_tail(path.read_bytes())
    if tail:
        warnings.warn(
            f"{path}: dropping a torn last line ({len(tail)} bytes) left by an interrupted run",
            stacklevel=2,
        )
        with open(path, "r+b") as fh:
            fh.truncate(len(complete))


def read_records(path: str | Path) -> list[Any]:
    """All complete records of a JSONL file; a torn last line is ignored with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    complete, tail = split_tail(path.read_bytes())
    if tail:
        warnings.warn(f"{path}: ignoring a torn last line ({len(tail)} bytes)", stacklevel=2)
    try:
        text = complete.decode("utf-8")
    except UnicodeDecodeError:
        text = read_text(path)
    return [obj for _, obj in jsonl_values(text.splitlines(), path)]


def append_record(fh, record: Any) -> None:
    """Write one record as one line with a single write, then flush and fsync, so that an
    interruption can leave at most a torn last line."""
    fh.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    fh.flush()
    os.fsync(fh.fileno())
