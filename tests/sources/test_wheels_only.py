"""Preset preparation fetches wheels only: an index offering only an sdist of the pinned
version runs none of its code (without `--only-binary=:all:`, pip runs its setup.py to read its
metadata). A real `pip download` against a local folder; no network."""

from __future__ import annotations

import tarfile

import pytest

from toolkit.sources import wheels

SETUP = """import os, pathlib
pathlib.Path(os.environ["SURGERY_TEST_MARKER"]).write_text("ran")
from setuptools import setup
setup(name="evilpkg", version="1.0")
"""


def test_an_sdist_only_index_runs_no_code(tmp_path, monkeypatch):
    source, index = tmp_path / "evilpkg-1.0", tmp_path / "index"
    source.mkdir()
    index.mkdir()
    (source / "setup.py").write_text(SETUP)
    (source / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n")
    with tarfile.open(index / "evilpkg-1.0.tar.gz", "w:gz") as tar:
        tar.add(source, arcname=source.name)
    marker = tmp_path / "marker"
    for key, value in {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index),
                       "PIP_NO_BUILD_ISOLATION": "0",  # "0" turns isolation off: setup.py runs
                       "SURGERY_TEST_MARKER": str(marker)}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(wheels.WheelDownloadError, match="pip download evilpkg==1.0` failed"):
        wheels.download(("evilpkg==1.0",), tmp_path / "download")
    assert not marker.exists(), "the sdist's build code ran"
