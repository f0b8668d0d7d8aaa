"""A bounded walk over a GGUF file's header and metadata, run before the `gguf` package reads it.

The upstream reader trusts the counts a file states: an absurd key count ends in a
`struct.error`, and a small file holding an array of millions of strings builds millions of
numpy views first (gigabytes, minutes) before anything refuses it. Here every count and length
is checked against the bytes left in the file and against caps far above what real models
need (a vocabulary of about 260,000 tokens, some tens of metadata keys), without building the
values; `check_header(path)` returns None or raises `GGUFHeaderError` saying what is wrong.

Layout (GGUF v2/v3, little- or big-endian): magic b"GGUF", version u32, tensor count u64,
key count u64, then per key: name (u64 length + UTF-8 bytes), value type u32, value. A value is
a fixed-size number, a string, or an array (element type u32, count u64, elements).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

MAX_KEYS = 10_000
MAX_TENSORS = 1_000_000
MAX_ARRAY = 1_000_000  # elements in one array: several times the largest vocabularies
MAX_STRING = 64 * 2**20  # bytes in one string (chat templates are some kilobytes)
MAX_NESTING = 2  # an array of arrays, no deeper
STRING, ARRAY = 8, 9
# Sizes of the fixed-size value types, by type number.
FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
# The smallest tensor record: name length u64, dims u32, one dim u64, type u32, offset u64.
MIN_TENSOR_RECORD = 8 + 4 + 8 + 4 + 8


class GGUFHeaderError(ValueError):
    """The GGUF header or metadata is damaged or beyond the reader's caps (the message says how)."""


class _Cursor:
    def __init__(self, data, order: str) -> None:
        self.data, self.pos = data, 0
        self.u32, self.u64 = struct.Struct(order + "I"), struct.Struct(order + "Q")

    def left(self) -> int:
        return len(self.data) - self.pos

    def skip(self, size: int, what: str) -> None:
        if size > self.left():
            raise GGUFHeaderError(f"{what} needs {size} bytes, but only {self.left()} are left "
                                  "in the file (it is cut off or damaged)")
        self.pos += size

    def number(self, unpack: struct.Struct, what: str) -> int:
        start = self.pos
        self.skip(unpack.size, what)
        return unpack.unpack_from(self.data, start)[0]

    def string(self, what: str) -> bytes:
        size = self.number(self.u64, what)
        if size > MAX_STRING:
            raise GGUFHeaderError(f"{what} is {size} bytes long, more than the {MAX_STRING} a "
                                  "string may have")
        start = self.pos
        self.skip(size, what)
        return self.data[start:self.pos]


def _value(cur: _Cursor, kind: int, what: str, depth: int = 0) -> None:
    if kind in FIXED:
        cur.skip(FIXED[kind], what)
    elif kind == STRING:
        cur.string(what)
    elif kind == ARRAY and depth < MAX_NESTING:
        _array(cur, what, depth + 1)
    elif kind == ARRAY:
        raise GGUFHeaderError(f"{what} nests arrays deeper than {MAX_NESTING} levels")
    else:
        raise GGUFHeaderError(f"{what} has value type {kind}, which GGUF does not define")


def _array(cur: _Cursor, what: str, depth: int) -> None:
    kind = cur.number(cur.u32, what)
    count = cur.number(cur.u64, what)
    if count > MAX_ARRAY:
        raise GGUFHeaderError(f"{what} is an array of {count} values, more than the "
                              f"{MAX_ARRAY} an array may have")
    if kind in FIXED:
        cur.skip(count * FIXED[kind], what)
        return
    smallest = 8 if kind == STRING else 12  # a string's length, an inner array's type and count
    if count * smallest > cur.left():
        raise GGUFHeaderError(f"{what} claims {count} values, more than the {cur.left()} bytes "
                              "left in the file can hold")
    for _ in range(count):
        _value(cur, kind, what, depth)


def _walk(data) -> None:
    if data[:4] != b"GGUF":
        raise GGUFHeaderError("it does not start with the GGUF magic bytes")
    order = "<" if struct.unpack_from("<I", data, 4)[0] & 0xFFFF else ">"
    cur = _Cursor(data, order)
    cur.skip(4, "the magic")
    version = cur.number(cur.u32, "the version")
    if version not in (2, 3):
        raise GGUFHeaderError(f"it is GGUF version {version}; versions 2 and 3 are read")
    tensors = cur.number(cur.u64, "the tensor count")
    keys = cur.number(cur.u64, "the key count")
    if keys > MAX_KEYS:
        raise GGUFHeaderError(f"it claims {keys} metadata keys, more than the {MAX_KEYS} a "
                              "GGUF file may have")
    for number in range(keys):
        name = cur.string(f"metadata key {number}")
        what = f"metadata key {name.decode('utf-8', 'replace')[:80]!r}"
        _value(cur, cur.number(cur.u32, what), what)
    if tensors > MAX_TENSORS or tensors * MIN_TENSOR_RECORD > cur.left():
        raise GGUFHeaderError(f"it claims {tensors} tensors, more than the file can describe")


def check_header(path: str | Path) -> None:
    """Walk `path`'s header and metadata within the caps; GGUFHeaderError naming what is wrong,
    OSError when the file cannot be read."""
    with open(path, "rb") as fh:
        if Path(path).stat().st_size < 24:
            raise GGUFHeaderError("it is shorter than a GGUF header (24 bytes)")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            _walk(data)
