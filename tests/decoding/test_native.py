"""The C kernels of SLED's and DoLa's passes (toolkit.decoding.native): they agree with the torch
ops on LLM-sized and on hypothesis-drawn logits (-inf, ties, extremes), DoLa's values stay within
1e-5 of the reference formula, the build is cached and rebuilt when broken, no compiler means the
torch ops run, and splitting rows over threads changes nothing."""

from __future__ import annotations

import math
import os
import shutil
import tempfile

import pytest
import torch
import torch.nn.functional as F
from _hypothesis import DECODING, layer_logits, rows_alone
from hypothesis import given

from toolkit.decoding import dola_values, layer_divergences, native, sled_details
from toolkit.decoding.reference import sled_evolve_naive

pytestmark = pytest.mark.skipif(not native.available(), reason=native.status())


@pytest.fixture
def torch_ops():
    """Run the block inside with the C kernels off."""
    native.use_native(False)
    yield
    native.use_native(True)


def _llm_like(batch=3, layers=6, vocab=32000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    final = torch.randn(batch, vocab, generator=gen) * 3
    early = torch.randn(batch, layers, vocab, generator=gen) * 3 + final.unsqueeze(1)
    early[:, :2] *= torch.linspace(0.5, 2.0, batch).view(-1, 1, 1)  # layers that differ more
    return final, early


def _both(fn):
    native.use_native(False)
    try:
        eager = fn()
    finally:
        native.use_native(True)
    return fn(), eager


def test_sled_matches_the_torch_ops_and_float64_at_llm_scale():
    """Both within 1e-5 of the literal formulation in float64 (the kernels' sums, in double
    across blocks, are the closer: about 3e-8 on the layer weights against 1e-6)."""
    final, early = _llm_like(batch=2)
    kw = dict(evolution_rate=2.0, evolution_scale=50)
    c, eager = _both(lambda: sled_details(final, early, **kw))
    exact = sled_evolve_naive(final, early, **kw, dtype=torch.float64)
    assert torch.equal(c.topk_indices, eager.topk_indices)
    for result in (c, eager):
        assert (result.logits.double() - exact).abs().max() <= 1e-5
    assert (c.latent - eager.latent).abs().max() <= 1e-6
    assert (c.layer_weights - eager.layer_weights).abs().max() <= 1e-5


def _reference_dola(final, early, relative_top):
    """DoLa as the reference code computes it (F.kl_div JSD, one layer per row), in float64."""
    final, early = final.double(), early.double()
    mix = 0.5 * (F.softmax(final, -1).unsqueeze(1) + F.softmax(early, -1))
    kl_final = F.kl_div(F.log_softmax(final, -1).unsqueeze(1), mix, reduction="none").mean(-1)
    kl_early = F.kl_div(F.log_softmax(early, -1), mix, reduction="none").mean(-1)
    jsd = 0.5 * (kl_final + kl_early)
    chosen = jsd.argmax(-1)
    log_final = F.log_softmax(final, -1)
    out = log_final - F.log_softmax(early[torch.arange(early.shape[0]), chosen], -1)
    if relative_top > 0:
        keep = log_final >= log_final.amax(-1, keepdim=True) + math.log(relative_top)
        out = out.masked_fill(~keep, -math.inf)
    return out, chosen, jsd


@pytest.mark.parametrize("relative_top", [0.1, 0.0])
@pytest.mark.parametrize("path", ["C kernels", "torch ops"])
def test_dola_values_within_1e_5_of_the_reference_formula(relative_top, path):
    final, early = _llm_like(seed=1)
    native.use_native(path == "C kernels")
    try:
        out, chosen = dola_values(final, early, relative_top=relative_top)
        jsd = layer_divergences(final, early)
    finally:
        native.use_native(True)
    ref_out, ref_chosen, ref_jsd = _reference_dola(final, early, relative_top)
    assert torch.equal(chosen, ref_chosen)
    assert torch.equal(torch.isinf(out), torch.isinf(ref_out))
    finite = torch.isfinite(ref_out)
    assert (out.double()[finite] - ref_out[finite]).abs().max() <= 1e-5
    assert torch.allclose(jsd.double(), ref_jsd, rtol=1e-5, atol=1e-12)


@given(inputs=layer_logits())
@DECODING
def test_the_kernels_agree_with_the_torch_ops_on_any_logits(inputs):
    """-inf entries, fully masked rows, ties, tiny and huge magnitudes, fp16 and bf16: the same
    top-K, -inf where the torch ops put it, no NaN, and values within float32 rounding."""
    final, early = inputs
    k = min(3, final.shape[-1])
    kw = dict(evolution_rate=2.0, evolution_scale=k)
    c, eager = _both(lambda: sled_details(final, early, **kw))
    assert torch.equal(c.topk_indices, eager.topk_indices)
    for got, want in ((c.logits, eager.logits), (c.latent, eager.latent),
                      (c.layer_weights, eager.layer_weights)):
        assert not torch.isnan(got).any()
        assert torch.equal(torch.isinf(got), torch.isinf(want))
        assert torch.allclose(got.float(), want.float(), rtol=1e-4, atol=1e-5)
    (out, chosen), (eager_out, eager_chosen) = _both(lambda: dola_values(final, early))
    if torch.equal(chosen, eager_chosen):  # a near-tie of two layers' scores may go either way
        assert out.dtype == eager_out.dtype and not torch.isnan(out).any()
        assert torch.equal(torch.isinf(out), torch.isinf(eager_out))
        finite = torch.isfinite(eager_out)
        assert torch.allclose(out[finite].float(), eager_out[finite].float(), rtol=1e-5,
                              atol=1e-5)
    jsd, eager_jsd = _both(lambda: layer_divergences(final, early))
    assert torch.isfinite(jsd).all()
    # float32 rounding of sum_v M (2 log M - log P_N - log P_j), terms as large as the logits'
    # spread: the totals (jsd * 2V) agree within 1e-6 of that spread
    spread = 1 + _spread(final.float()).unsqueeze(-1) + _spread(early.float())
    total, eager_total = (2 * final.shape[-1] * t for t in (jsd, eager_jsd))
    assert ((total - eager_total).abs() <= 1e-4 * eager_total.abs() + 1e-6 * spread).all()


@pytest.mark.parametrize("block", [1, 1 << 19])
def test_rows_with_minus_inf_are_redone_as_if_alone(monkeypatch, block):
    """Batch rows whose sums are not finite are recomputed the careful way, a block of rows at
    a time, and come out as each row computed alone; the other rows are untouched."""
    import toolkit.decoding.blocks as blocks

    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", block)
    final, early = _llm_like(batch=5, layers=3, vocab=200, seed=3)
    final[1, 5] = early[3, 2, 7] = early[4, 0, :] = -math.inf
    kw = dict(evolution_rate=2.0, evolution_scale=10)

    def run(f, e):
        r = sled_details(f, e, **kw)
        return r.logits, r.layer_weights, layer_divergences(f, e)

    for path in (True, False):
        native.use_native(path)
        try:
            for batched, alone in zip(run(final, early), rows_alone(run, final, early),
                                      strict=True):
                assert torch.allclose(batched, alone, atol=1e-6, rtol=0), path
        finally:
            native.use_native(True)


def _spread(logits):
    """max - min of the finite logits of each row, 0 where none is finite: (..., V) -> (...)."""
    finite = torch.isfinite(logits)
    top = logits.masked_fill(~finite, -math.inf).amax(-1)
    low = logits.masked_fill(~finite, math.inf).amin(-1)
    return torch.where(finite.any(-1), top - low, 0.0)


def test_rows_split_over_threads_give_the_same_bits():
    final, early = _llm_like(batch=4, layers=5, vocab=3000, seed=2)
    kw = dict(evolution_rate=2.0, evolution_scale=20)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = sled_details(final, early, **kw), layer_divergences(final, early)
        torch.set_num_threads(3)
        split = sled_details(final, early, **kw), layer_divergences(final, early)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(alone[0].logits, split[0].logits)
    assert torch.equal(alone[0].layer_weights, split[0].layer_weights)
    assert torch.equal(alone[1], split[1])


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """The kernels' build state reset, the cache in tmp_path; restored afterwards."""
    saved = dict(native._state)
    monkeypatch.setenv("SURGERY_CACHE", str(tmp_path))
    native._state.update(library=None, status="C kernels not built yet")
    yield tmp_path / "native"
    native._state.update(saved)


def test_without_a_compiler_the_torch_ops_run(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler")
    final, early = _llm_like(batch=2, layers=3, vocab=500)
    assert native.status() == ("SLED/DoLa CPU math: torch ops (no C compiler: "
                               "'no-such-compiler' is not on PATH)")
    assert not native.available() and not native.runs_on(early)
    result = sled_details(final, early, evolution_rate=2.0, evolution_scale=10)
    assert torch.isfinite(result.logits).any() and not fresh_build.exists()


def test_a_failing_build_says_why(fresh_build, monkeypatch, tmp_path):
    compiler = tmp_path / "broken-cc"
    compiler.write_text("#!/bin/sh\necho 'cc: internal error' >&2\nexit 3\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    line = native.status()
    assert line.startswith("SLED/DoLa CPU math: torch ops (building the C kernels failed: ")
    assert "broken-cc exited with 3: cc: internal error" in line
    assert not native.available() and list(fresh_build.iterdir()) == []
    assert list(temp.iterdir()) == []  # no second try outside the cache


def test_a_cache_that_cannot_be_written_leaves_the_torch_ops(fresh_build, monkeypatch, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("SURGERY_CACHE", str(blocked))
    line = native.status()
    assert line.startswith("SLED/DoLa CPU math: torch ops (building the C kernels failed: ")
    final, early = _llm_like(batch=2, layers=3, vocab=500)
    assert not native.runs_on(early)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_the_build_is_cached_and_a_broken_one_replaced(fresh_build):
    path = native._built_path(fresh_build, shutil.which(os.environ.get("CC") or "cc"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a shared library")  # e.g. left by a full disk
    assert native.available() and native.status().endswith(f"{path})")
    stamp = path.stat().st_mtime_ns
    native._state.update(library=None)
    assert native.available() and path.stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert [p.name for p in fresh_build.iterdir()] == [path.name]
    final, early = _llm_like(batch=2, layers=3, vocab=500)
    c, eager = _both(lambda: layer_divergences(final, early))
    assert torch.allclose(c, eager, rtol=1e-5)
