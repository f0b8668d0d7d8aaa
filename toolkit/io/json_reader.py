"""The one JSON reader: `json.loads` with bounds on nesting and number size.

Python's parser recurses once per nested array or object (a deeply nested file ends in a
RecursionError) and refuses integers longer than 4300 digits with a ValueError, both raised
from deep inside whatever read the file. Here both are limits of the reader: a value nested
deeper than `MAX_DEPTH` or a number longer than `MAX_NUMBER_CHARS` raises `JSONLimitError`, a
`json.JSONDecodeError`, so every caller's handling of malformed JSON (one line naming the
file) covers it too.

    from toolkit.io import json_reader
    data = json_reader.loads(text)        # or json_reader.load(path)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# Deeper than any file this toolkit reads or writes (a checkpoint config nests about 5 levels).
MAX_DEPTH = 64
# Characters in one JSON number: token ids, counts and floats need far fewer.
MAX_NUMBER_CHARS = 100


class JSONLimitError(json.JSONDecodeError):
    """A JSON text within the grammar but past the reader's limits (`msg` says which)."""

    def __init__(self, msg: str, doc: str = "", pos: int = 0) -> None:
        super().__init__(msg, doc, pos)


def _number(kind: type):
    def parse(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise JSONLimitError(f"a number of {len(text)} characters, more than the "
                                 f"{MAX_NUMBER_CHARS} a number may have")
        return kind(text)

    return parse


_parse_int, _parse_float = _number(int), _number(float)
# A JSON number has at most 4 characters that are not digits ("-", ".", "e", "+"), so one past
# the limit holds a run of this many digits; text without such a run parses at C speed.
_LONG_DIGITS = re.compile(rf"[0-9]{{{(MAX_NUMBER_CHARS - 4) // 2}}}")


def _check_depth(value: Any) -> None:
    """Raise JSONLimitError when arrays and objects in `value` nest deeper than MAX_DEPTH
    (walked without recursion)."""
    level, depth = [value], 1
    while level:
        if depth > MAX_DEPTH:
            raise JSONLimitError(_too_deep())
        inner = []
        for item in level:
            for child in (item.values() if isinstance(item, dict) else item):
                if isinstance(child, (dict, list)):
                    inner.append(child)
        level, depth = inner, depth + 1


def _too_deep() -> str:
    return f"arrays and objects nested deeper than {MAX_DEPTH} levels, the most this reader takes"


def loads(text: str | bytes) -> Any:
    """`json.loads(text)` within the limits; `json.JSONDecodeError` (maybe a JSONLimitError)
    for text that is not JSON or past a limit, UnicodeDecodeError for bytes not UTF-8."""
    digits = text if isinstance(text, str) else text.decode("utf-8")
    hooks = ({"parse_int": _parse_int, "parse_float": _parse_float}
             if _LONG_DIGITS.search(digits) else {})
    try:
        value = json.loads(digits, **hooks)
    except RecursionError:
        raise JSONLimitError(_too_deep()) from None
    if isinstance(value, (dict, list)) and digits.count("[") + digits.count("{") > MAX_DEPTH:
        _check_depth(value)  # fewer brackets than the limit cannot nest past it
    return value


def load(path: str | Path) -> Any:
    """`loads` of a UTF-8 file's text (OSError when it cannot be read)."""
    return loads(Path(path).read_text(encoding="utf-8"))
