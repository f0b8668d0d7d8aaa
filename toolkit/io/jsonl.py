"""JSONL files, the one reader and writer of prompt, data and record files: one JSON value per
non-blank line, errors naming file and line; append-safe writing (one write + fsync per record)
and repair of a torn last line, so that long jobs write as they go and resume.

A line ends only at `\\n` (a `\\r` before it is JSON whitespace, so CRLF files read as well).
`str.splitlines` would also break at U+0085, U+2028, U+2029 and other code points that are valid
raw inside a JSON string; readers therefore split at `\\n` alone, and `dumps_line` escapes every
code point that `splitlines` breaks at, so a record reads back as one line with any tool.

`read_objects` yields the JSON objects of an input file with their line numbers; a line that is
not a JSON object goes to a `BadRows` policy: "error" raises `DataError` naming `file:line` and
the problem, "skip" lists it and goes on. `read_prompts` builds on it for prompt files.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.core.errors import DataError
from toolkit.io import json_reader, tables

BAD_ROW_POLICIES = ("skip", "error")
# Hostile sizes are refused while reading: a line (one record) and a prompt's text.
MAX_LINE_BYTES = 8 * 2**20
MAX_PROMPT_CHARS = 2**20
# Every code point `str.splitlines` breaks a line at; `json.dumps` escapes those below U+0020.
LINE_BREAKS = "\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"
_ESCAPES = {ord(c): f"\\u{ord(c):04x}" for c in LINE_BREAKS}


def dumps_line(record: Any) -> str:
    """One JSONL line for `record` (with its `\\n`): UTF-8 text kept readable, every line-breaking
    code point escaped."""
    return json.dumps(record, ensure_ascii=False).translate(_ESCAPES) + "\n"


def split_lines(text: str) -> list[str]:
    """The lines of a JSONL text: split at `\\n` only (a trailing `\\r` stays; JSON ignores it)."""
    parts = text.split("\n")
    return parts[:-1] if parts and parts[-1] == "" else parts


@dataclass
class BadRows:
    """What to do with a malformed row: raise at once ("error") or list it and go on ("skip").

    Args:
        policy: "error" or "skip".
        hint: the fix added to the error message, e.g. "set eval.on_bad_row=skip to skip it".
    """

    policy: str = "error"
    hint: str = ""
    skipped: list[str] = field(default_factory=list)

    def report(self, path: str | Path, line: int, reason: str) -> None:
        """Raise DataError('path:line: reason') under "error"; record it under "skip"."""
        where = f"{path}:{line}: {reason}"
        if self.policy == "error":
            raise DataError(f"{where} ({self.hint})" if self.hint else where)
        self.skipped.append(where)


def existing_file(path: str | Path, key: str = "") -> Path:
    """`path` as a Path; DataError naming the recipe `key` (if given) when it is not a file."""
    p = Path(path)
    if not p.is_file():
        fix = f"; set {key} to a local file" if key else ""
        raise DataError(f"data file {str(p)!r} does not exist{fix}")
    return p


def _parse(line: str, path: str | Path, lineno: int) -> Any:
    try:
        return json_reader.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None


def raw_lines(path: str | Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without the `\n`, whether the `\n` was there) for each line, read
    one line at a time: a line longer than MAX_LINE_BYTES raises DataError as soon as that many
    bytes are read, so memory stays bounded whatever the file holds."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(
                    f"{path}:{number}: the line is longer than {MAX_LINE_BYTES // 2**20} MiB, "
                    "the most one JSONL record may hold; shorten or split that record"
                )
            complete = raw.endswith(b"\n")
            yield number, raw[:-1] if complete else raw, complete


def decode(raw: bytes, path: str | Path, line: int) -> str:
    """One line's text as UTF-8; a byte that is not UTF-8 raises DataError naming the line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}:{line}: byte 0x{raw[err.start]:02x} is not UTF-8; save the file as UTF-8"
        ) from None


def split_tail(data: bytes) -> tuple[bytes, bytes]:
    """(complete lines, torn tail) of a JSONL file's bytes."""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def repair_tail(path: str | Path) -> None:
    """Truncate a torn last line (left by an interruption) before appending, with a warning.
    Call it only on a file this toolkit wrote (`toolkit.io.provenance.check` first)."""
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
    return [record for _, record in read_numbered(path)]


def read_numbered(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, record) for every complete non-blank line; a torn last line is ignored
    with a warning, a missing file holds none."""
    path = Path(path)
    if not path.exists():
        return []
    texts = []  # every line decoded first, so a binary file reads as "not UTF-8"
    for number, raw, complete in raw_lines(path):
        if not complete:
            warnings.warn(f"{path}: ignoring a torn last line ({len(raw)} bytes)", stacklevel=3)
            break
        texts.append((number, decode(raw, path, number)))
    return [(number, _parse(text, path, number)) for number, text in texts if text.strip()]


def append_record(fh, record: Any) -> None:
    """Write one record as one line with a single write, then flush and fsync, so that an
    interruption can leave at most a torn last line."""
    fh.write(dumps_line(record).encode("utf-8"))
    fh.flush()
    os.fsync(fh.fileno())


def read_objects(path: str | Path, bad: BadRows | None = None,
                 key: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL file.

    Args:
        path: the file; a missing one raises DataError (naming the recipe `key` if given).
        bad: the policy for lines that are not JSON objects (default: raise).
        key: the recipe key the path came from, for the error message.

    Returns:
        An iterator of (1-based line number, dict).
    """
    p = existing_file(path, key)
    bad = bad or BadRows()
    for number, raw, _ in raw_lines(p):
        text = decode(raw, p, number)
        if not text.strip():
            continue
        try:
            obj = json_reader.loads(text)
        except json.JSONDecodeError as err:
            bad.report(p, number, f"invalid JSON ({err.msg})")
            continue
        if not isinstance(obj, dict):
            bad.report(p, number, "not a JSON object")
            continue
        if not encodable(text, obj):
            bad.report(p, number, "a string holds a lone surrogate (an escape from \\ud800 to "
                       "\\udfff not part of a pair), which is not text; fix that escape")
            continue
        yield number, obj


def encodable(text: str, value: Any) -> bool:
    """Whether every string in `value` (parsed from the JSON `text`) is text UTF-8 can encode:
    a `\\udXXX` escape may stand for half a surrogate pair, which tokenizers refuse."""
    return "\\ud" not in text.lower() or is_text(dumps_line(value))


def is_text(value: str) -> bool:
    """Whether `value` encodes as UTF-8. A lone surrogate (half of a pair: a JSON or YAML
    escape from \\ud800 to \\udfff, or a command-line byte that is not UTF-8, which Python
    decodes to \\udcXX) does not, and no parser or tokenizer takes it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_prompts(path: str | Path, field: str = "prompt", bad: BadRows | None = None,
                 token_ids: bool = False, key: str = "") -> list[tuple[int, dict[str, Any]]]:
    """The prompt records of a JSONL file, with their line numbers.

    Args:
        path: the JSONL file, a Parquet file or a `datasets` id (`toolkit.io.tables`).
        field: the field holding the prompt: text, or a conversation (a list of
            {"role", "content"} messages, rendered with the model's chat template).
        bad: the policy for bad lines (default: raise DataError naming file and line).
        token_ids: also accept a record whose 'prompt_ids' is a non-empty list of token ids.
        key: the recipe key the path came from, for the error message.

    Returns:
        (line number, record) for every good line; DataError when there are none.
    """
    bad = bad or BadRows()
    records = []
    for number, obj in read_rows(path, bad, key):
        ids = obj.get("prompt_ids")
        good_ids = isinstance(ids, list) and bool(ids) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids)
        has_ids = token_ids and good_ids
        text = obj.get(field)
        if "prompt_ids" in obj and not good_ids:  # collect uses them, not the text
            bad.report(path, number, "prompt_ids must be a non-empty list of token ids "
                       "(integers); fix it or drop the field to use the prompt text")
            continue
        if isinstance(text, str) and len(text) > MAX_PROMPT_CHARS:
            bad.report(path, number, f"the prompt has {len(text)} characters, more than the "
                       f"{MAX_PROMPT_CHARS} a prompt may hold; shorten it")
            continue
        if text == "" and not has_ids:
            bad.report(path, number, "the prompt is empty; give some text to continue")
            continue
        if isinstance(obj.get(field), str) or has_ids or is_conversation(obj.get(field)):
            records.append((number, obj))
            continue
        also = " or 'prompt_ids' (a list of token ids)" if token_ids else ""
        bad.report(path, number, f"missing field {field!r} (a string or a list of "
                                 f"{{'role', 'content'}} messages){also}")
    if not records:
        raise DataError(f"{path} holds no prompts")
    return records


def read_rows(path, bad: BadRows, key: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """`read_objects` of a JSONL file, or the rows of a Parquet file or `datasets` split
    (`toolkit.io.tables`), each row's strings checked to be text as a JSONL line's are."""
    if not tables.is_table(path):
        yield from read_objects(path, bad, key)
        return
    for number, row in tables.table_rows(path, key):
        if not is_text(dumps_line(row)):
            bad.report(path, number, "a string holds a lone surrogate, which is not text")
            continue
        yield number, row


def is_conversation(value: Any) -> bool:
    """A non-empty list of {"role": str, "content": str} messages."""
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value)
