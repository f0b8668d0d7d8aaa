"""The `runtime` recipe section: torch's thread count (auto or given), printed by every CLI run,
and the allocator set-up."""

from __future__ import annotations

import platform

import pytest
import torch

from toolkit.cli.main import main
from toolkit.core import runtime
from toolkit.core.errors import ConfigError
from toolkit.core.runtime import RuntimeConfig, auto_threads


@pytest.fixture
def keep_threads():
    from toolkit.decoding import blocks

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    blocks.use_compile(False)


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
    line = runtime.configure(RuntimeConfig(threads=1, compile=True))
    assert line.endswith("SLED/DoLa block math compiled (runtime.compile)")
    from toolkit.decoding.blocks import compile_enabled

    assert compile_enabled()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_reuse_tunes_glibc_malloc(keep_threads):
    line = runtime.configure(RuntimeConfig(threads=1))
    assert line == "torch threads: 1 (runtime.threads); allocator reuses freed blocks"


def test_cli_run_prints_its_threads(capsys, tmp_path, tiny_llama_dir, keep_threads):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path}/out\nmodel:\n  path: {tiny_llama_dir}\n"
                      "graft:\n  head:\n    hidden_size: 16\nruntime:\n  threads: 1\n")
    assert main(["graft", str(recipe)]) == 0
    err = capsys.readouterr().err
    assert "torch threads: 1 (runtime.threads)" in err and torch.get_num_threads() == 1


def test_compile_falls_back_to_eager_with_one_warning(monkeypatch):
    """A backend that cannot compile: SLED and DoLa still run (eagerly), with the results of
    their torch ops (`runtime.compile` turns the C kernels off)."""
    from toolkit.decoding import blocks, dola_contrast, native, sled_evolve

    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no C++ compiler found")
        return run

    gen = torch.Generator().manual_seed(0)
    final, early = torch.randn(3, 40, generator=gen), torch.randn(3, 4, 40, generator=gen)
    native.use_native(False)
    try:
        eager = sled_evolve(final, early, evolution_rate=2.0, evolution_scale=5)
        eager_dola = dola_contrast(final, early)
    finally:
        native.use_native(True)
    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(blocks, "_compiled", {})
    blocks.use_compile(True)
    try:
        with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found.*eagerly"):
            got = sled_evolve(final, early, evolution_rate=2.0, evolution_scale=5)
        assert torch.equal(got, eager)
        with pytest.warns(RuntimeWarning, match="_block_divergences"):
            got_dola = dola_contrast(final, early)
        assert all(torch.equal(a, b) for a, b in zip(got_dola, eager_dola, strict=True))
    finally:
        blocks.use_compile(False)


@pytest.mark.slow
def test_compiled_block_math_matches_eager(monkeypatch):
    from toolkit.decoding import blocks, layer_divergences, sled_details

    gen = torch.Generator().manual_seed(1)
    final = torch.randn(2, 500, generator=gen) * 3
    early = torch.randn(2, 6, 500, generator=gen) * 3 + final.unsqueeze(1)
    kw = dict(evolution_rate=2.5, evolution_scale=20, op_T=3)
    eager, eager_jsd = sled_details(final, early, **kw), layer_divergences(final, early)
    monkeypatch.setattr(blocks, "_compiled", {})
    blocks.use_compile(True)
    try:
        compiled, jsd = sled_details(final, early, **kw), layer_divergences(final, early)
    finally:
        blocks.use_compile(False)
    assert (compiled.logits - eager.logits).abs().max() <= 1e-5
    assert torch.allclose(jsd, eager_jsd, rtol=1e-5, atol=1e-9)
