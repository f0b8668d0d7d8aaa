"""The model cache: a folder the toolkit did not write is refused with one line and left as it
is, a damaged entry the toolkit wrote is prepared again, and the staging folder of a build
killed with SIGKILL is removed by the next preparation unless its writer still holds it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest

from toolkit.sources import cache, presets, wheels
from toolkit.sources.cache import CacheEntryError
from toolkit.sources.presets import prepare_preset

NAME = "smollm2-135m-instruct"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SURGERY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "cache"


@pytest.fixture
def builds(monkeypatch) -> list[Path]:
    """The wheel source replaced by one that writes a two-file model; the staging folders it
    was given."""
    given = []

    def fake_wheel(preset, staging, say, failures):
        given.append(staging)
        (staging / "config.json").write_text('{"model_type": "llama"}')
        (staging / "model.safetensors").write_bytes(b"w" * 100)
        return True

    monkeypatch.setattr(presets, "_from_wheel", fake_wheel)
    return given


def test_a_foreign_folder_is_refused_with_one_line_and_left_alone(cache_root, monkeypatch):
    entry = cache_root / NAME
    entry.mkdir(parents=True)
    (entry / "notes.txt").write_text("mine")
    monkeypatch.setattr(wheels.subprocess, "run", lambda *a, **k: pytest.fail("pip ran"))
    with pytest.raises(CacheEntryError) as err:
        prepare_preset(NAME, say=lambda line: None)
    assert str(err.value) == (
        f"{entry} is in the model cache, but the toolkit did not write it and it has no "
        "config.json; remove that folder (or move it away) and run again, or set "
        "$SURGERY_CACHE to use another cache")
    assert [p.name for p in cache_root.iterdir()] == [NAME]
    assert [p.name for p in entry.iterdir()] == ["notes.txt"]
    assert (entry / "notes.txt").read_text() == "mine"


def test_a_damaged_entry_is_prepared_again(cache_root, builds):
    entry = prepare_preset(NAME, say=lambda line: None)
    assert cache.state(entry) == cache.READY and len(builds) == 1
    (entry / "model.safetensors").write_bytes(b"w" * 10)  # cut short
    said = []
    assert prepare_preset(NAME, say=said.append) == entry and len(builds) == 2
    assert said[1] == f"{entry} is damaged (a file is missing or has another size): preparing it again"
    assert (entry / "model.safetensors").read_bytes() == b"w" * 100
    (entry / "config.json").unlink()
    assert prepare_preset(NAME, say=lambda line: None) == entry and len(builds) == 3
    assert (entry / "config.json").is_file()
    assert sorted(p.name for p in cache_root.iterdir()) == [NAME], "no staging folder left"


def test_a_user_placed_model_folder_is_used_as_it_is(cache_root, builds):
    entry = cache_root / NAME
    entry.mkdir(parents=True)
    (entry / "config.json").write_text("{}")
    assert prepare_preset(NAME, say=lambda line: None) == entry and builds == []


WRITER = """
import sys, time
from pathlib import Path
from toolkit.sources.cache import publish_to_cache

def build(staging):
    (staging / "config.json").write_text("{}")
    print(staging, flush=True)
    time.sleep(60)

publish_to_cache(Path(sys.argv[1]), build, ready=lambda path: False)
"""


def _writer(entry: Path) -> tuple[subprocess.Popen, Path]:
    """A process building `entry`, stopped in the middle of its build; its staging folder."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(entry)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    staging = Path(proc.stdout.readline().strip())
    assert staging.parent == entry.parent and (staging / "config.json").is_file()
    return proc, staging


def test_a_killed_builds_staging_is_removed_and_a_live_ones_kept(cache_root, builds):
    entry = cache_root / NAME
    killed, left = _writer(entry)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert left.is_dir(), "SIGKILL leaves the staging folder behind"
    live, held = _writer(entry)
    try:
        assert prepare_preset(NAME, say=lambda line: None) == entry
        assert not left.exists(), "the killed build's staging folder was not removed"
        assert (held / "config.json").is_file(), "a live writer's folder was removed"
    finally:
        live.kill()
        live.wait()
    assert prepare_preset(NAME, say=lambda line: None) == entry and len(builds) == 1
    assert [p.name for p in cache_root.iterdir()] == [NAME], "a dead writer's folder is kept"


def test_the_cli_says_the_foreign_folder_in_one_line(cache_root, tmp_path, capsys):
    from toolkit.cli.main import main

    entry = cache_root / NAME
    entry.mkdir(parents=True)
    (entry / "notes.txt").write_text("mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model:\n  preset: {NAME}\n")
    assert main(["graft", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: {entry} is in the model cache, but the toolkit did not write it "
                       "and it has no config.json; remove that folder (or move it away) and run "
                       "again, or set $SURGERY_CACHE to use another cache")
    assert (entry / "notes.txt").read_text() == "mine"
