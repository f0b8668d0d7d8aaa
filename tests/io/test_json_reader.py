"""The one JSON reader: nesting past MAX_DEPTH and numbers past MAX_NUMBER_CHARS are a
JSONDecodeError naming the limit (the plain parser ends in RecursionError or ValueError)."""

from __future__ import annotations

import json

import pytest

from toolkit.io import json_reader
from toolkit.io.json_reader import MAX_DEPTH, MAX_NUMBER_CHARS, JSONLimitError


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def test_plain_json_is_read_as_json_loads_reads_it():
    text = '{"a": [1, 2.5, -3e2, null, true, "x[[[{"], "b": {"c": "\\u00e9"}}'
    assert json_reader.loads(text) == json.loads(text)
    assert json_reader.loads(text.encode()) == json.loads(text)
    assert json_reader.loads('"' + "1" * 5000 + '"') == "1" * 5000  # digits in a string


def test_nesting_up_to_the_limit_is_read_past_it_refused():
    assert json_reader.loads(_nested(MAX_DEPTH)) == json.loads(_nested(MAX_DEPTH))
    with pytest.raises(JSONLimitError, match=f"nested deeper than {MAX_DEPTH} levels"):
        json_reader.loads(_nested(MAX_DEPTH + 1))
    deep_objects = '{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
    with pytest.raises(JSONLimitError, match="nested deeper"):
        json_reader.loads(deep_objects)


def test_nesting_that_overflows_the_parser_is_a_decode_error():
    text = _nested(100_000)
    with pytest.raises(RecursionError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError, match="nested deeper"):
        json_reader.loads(text)


def test_long_numbers_are_refused_short_ones_read():
    edge = "1" * MAX_NUMBER_CHARS
    assert json_reader.loads(f"[{edge}]") == [int(edge)]
    with pytest.raises(ValueError):
        json.loads("1" + "0" * 5000)  # Python's own limit on int digits
    with pytest.raises(json.JSONDecodeError, match="a number of 5001 characters"):
        json_reader.loads('{"n": 1' + "0" * 5000 + "}")
    with pytest.raises(JSONLimitError, match=f"more than the {MAX_NUMBER_CHARS}"):
        json_reader.loads("[0." + "5" * MAX_NUMBER_CHARS + "]")


def test_load_reads_a_file(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(_nested(MAX_DEPTH + 1))
    with pytest.raises(JSONLimitError):
        json_reader.load(path)
