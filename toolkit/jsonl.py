"""Reading JSONL input: one JSON value per non-blank line, errors naming file and line."""

from __future__ import annotations

import json
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
