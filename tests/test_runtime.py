"""The `runtime` recipe section: torch's thread count (auto or given), printed by every CLI run,
and the allocator set-up."""

from __future__ import annotations

import pytest
import torch

from toolkit import runtime
from toolkit.cli.main import main
from toolkit.errors import ConfigError
from toolkit.runtime import RuntimeConfig, auto_threads


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_config_is_checked():
    with pytest.raises(ConfigError, match="runtime.threads"):
        RuntimeConfig(threads=-1)
    with pytest.raises(ConfigError, match="runtime.allocator.*reuse"):
        RuntimeConfig(allocator="jemalloc")


def test_auto_threads_follow_omp_then_cpus_minus_load(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert auto_threads() == (3, "OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    for load, expected in ((0.2, 4), (1.6, 2), (3.7, 1), (9.0, 1)):
        monkeypatch.setattr("os.getloadavg", lambda load=load: (load, 0.0, 0.0))
        threads, why = auto_threads()
        assert threads == expected and why == f"4 CPUs, load {load:.1f}"


def test_configure_sets_and_describes(keep_threads):
    line = runtime.configure(RuntimeConfig(threads=1, allocator="system"))
    assert torch.get_num_threads() == 1
    assert line == runtime.describe() == "torch threads: 1 (runtime.threads); system allocator"
    line = runtime.configure(RuntimeConfig(threads=1))
    assert line.endswith("allocator reuses freed blocks") or "no glibc" in line


def test_cli_run_prints_its_threads(capsys, tmp_path, tiny_llama_dir, keep_threads):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path}/out\nmodel:\n  path: {tiny_llama_dir}\n"
                      "graft:\n  head:\n    hidden_size: 16\nruntime:\n  threads: 1\n")
    assert main(["graft", str(recipe)]) == 0
    err = capsys.readouterr().err
    assert "torch threads: 1 (runtime.threads)" in err and torch.get_num_threads() == 1
