"""SLED (docs/methods.md section 2): closed form vs the literal (N, K, V) formulation, hand-derived values,
-inf handling, properties, row independence, bad input."""

import math

import pytest
import torch
from _hypothesis import DECODING, layer_logits, rows_alone
from hypothesis import given
from hypothesis import strategies as st

from toolkit.decoding import sled_details, sled_evolve, sled_step
from toolkit.decoding.reference import sled_evolve_naive

pytestmark = pytest.mark.usefixtures("both_paths")  # C kernels and torch ops (conftest.py)

INF = math.inf


def _softmax(xs):
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    return [e / sum(exps) for e in exps]


def _cos(a, b):
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _hand_sled(z, layers, k, alpha, op_t, lower=-1000.0):
    """docs/methods.md section 2 with plain Python floats, one row (D = 0 where the final logit is -inf)."""
    p = _softmax(z)
    topk = sorted(range(len(z)), key=lambda i: -p[i])[:k]
    ms = []
    for zn in layers:
        d = [a - b if b > -INF else 0.0 for a, b in zip(zn, z, strict=True)]
        pn = _softmax(zn)
        grads = [[pn[j] - (1.0 if j == i else 0.0) for j in range(len(z))] for i in topk]
        m = [max(_cos(g, d), 0.0) ** 2 for g in grads]
        ms.append(m)
    sums = [sum(m) for m in ms]
    ms = [[x / s for x in m] if s != 0 else m for m, s in zip(ms, sums, strict=True)]
    weights = [s / sum(sums) for s in sums]
    latent = [0.0] * len(z)
    for w, m in zip(weights, ms, strict=True):
        for i, x in zip(topk, m, strict=True):
            latent[i] += w * x
    for t in range(op_t):
        q = _softmax(z)
        z = [
            zi - alpha * (1 - t / op_t) * (qi - li) for zi, qi, li in zip(z, q, latent, strict=True)
        ]
    out = [lower] * len(z)
    for i in topk:
        out[i] = z[i]
    return out, latent, weights, topk


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("k", [1, 7, 23])
@pytest.mark.parametrize("op_t", [1, 4])
def test_closed_form_matches_naive(batch, k, op_t):
    gen = torch.Generator().manual_seed(100 * batch + 10 * k + op_t)
    final = torch.randn(batch, 23, generator=gen) * 3
    early = torch.randn(batch, 5, 23, generator=gen) * 3
    kw = dict(evolution_rate=2.5, evolution_scale=k, op_T=op_t)
    fast = sled_evolve(final, early, **kw)
    slow = sled_evolve_naive(final, early, **kw)
    assert (fast - slow).abs().max().item() <= 1e-5


def test_closed_form_matches_naive_at_llm_scale():
    gen = torch.Generator().manual_seed(7)
    final = torch.randn(2, 4000, generator=gen) * 4
    early = torch.randn(2, 8, 4000, generator=gen) * 4 + final.unsqueeze(1)
    kw = dict(evolution_rate=2.0, evolution_scale=50, evolution_lower_bound=-100.0, op_T=10)
    assert (
        sled_evolve(final, early, **kw) - sled_evolve_naive(final, early, **kw)
    ).abs().max() <= 1e-5


def test_tiny_differences_follow_cosine_eps():
    """|D| below 1e-8: torch clamps the norm, so the cosine shrinks; the closed form agrees."""
    gen = torch.Generator().manual_seed(3)
    final = torch.randn(2, 9, generator=gen) * 1e-10
    early = torch.randn(2, 3, 9, generator=gen) * 1e-10
    kw = dict(evolution_rate=2.0, evolution_scale=4)
    result = sled_details(final, early, **kw)
    assert (result.logits - sled_evolve_naive(final, early, **kw)).abs().max() <= 1e-5
    assert result.latent.sum(-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


def test_hand_derived_one_layer_v3():
    z, layer = [1.0, 0.5, -1.0], [0.2, 1.5, -0.3]
    out, latent, weights, topk = _hand_sled(z, [layer], k=2, alpha=2.0, op_t=1)
    result = sled_details(
        torch.tensor([z]), torch.tensor([[layer]]), evolution_rate=2.0, evolution_scale=2
    )
    assert result.topk_indices[0].tolist() == topk == [0, 1]
    assert result.logits[0].tolist() == pytest.approx(out, abs=1e-6)
    assert result.logits[0, 2].item() == -1000.0
    assert result.latent[0].tolist() == pytest.approx(latent, abs=1e-6)
    assert result.layer_weights[0].tolist() == pytest.approx(weights, abs=1e-6) == [1.0]


def test_hand_derived_two_layers_decaying_rate():
    z = [0.3, -0.2, 1.1, 0.0]
    layers = [[1.0, 0.1, -0.5, 0.2], [0.2, -0.4, 1.6, -1.0]]
    out, latent, weights, _ = _hand_sled(z, layers, k=3, alpha=1.5, op_t=3, lower=-50.0)
    result = sled_details(
        torch.tensor([z]),
        torch.tensor([layers]),
        evolution_rate=1.5,
        evolution_scale=3,
        evolution_lower_bound=-50.0,
        op_T=3,
    )
    assert result.logits[0].tolist() == pytest.approx(out, abs=1e-6)
    assert result.latent[0].tolist() == pytest.approx(latent, abs=1e-6)
    assert result.layer_weights[0].tolist() == pytest.approx(weights, abs=1e-6)


def test_hand_derived_masked_final_token_has_no_contrast():
    """A final logit of -inf: D is 0 there (its early logits only enter through P) and it stays -inf."""
    z = [1.0, -INF, 0.5, -0.5]
    layers = [[0.2, 6.0, 1.0, -0.3], [1.5, -2.0, 0.0, 0.4]]
    out, latent, weights, topk = _hand_sled(z, layers, k=2, alpha=2.0, op_t=2)
    result = sled_details(
        torch.tensor([z]), torch.tensor([layers]), evolution_rate=2.0, evolution_scale=2, op_T=2
    )
    assert result.topk_indices[0].tolist() == topk == [0, 2]
    assert result.logits[0].tolist() == pytest.approx(out, abs=1e-6)
    assert result.latent[0].tolist() == pytest.approx(latent, abs=1e-6)
    assert result.layer_weights[0].tolist() == pytest.approx(weights, abs=1e-6)


def test_zero_difference_gives_zero_latent():
    """D = 0: every cosine is 0, P_lat = 0, and the top-K logits just lose alpha * softmax(z)."""
    z = torch.tensor([[2.0, 0.0, -1.0, 1.0]])
    result = sled_details(z, z.unsqueeze(1).repeat(1, 2, 1), evolution_rate=3.0, evolution_scale=2)
    q = _softmax(z[0].tolist())
    assert result.latent.abs().max().item() == 0.0
    assert result.layer_weights.tolist() == [[0.0, 0.0]]
    expected = [2.0 - 3.0 * q[0], -1000.0, -1000.0, 1.0 - 3.0 * q[3]]
    assert result.logits[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_minus_inf_early_logit_is_the_limit_of_a_very_negative_one():
    gen = torch.Generator().manual_seed(5)
    final = torch.randn(2, 12, generator=gen)
    early = torch.randn(2, 3, 12, generator=gen)
    masked = early.clone()
    masked[0, 1, 4] = masked[1, 0, 7] = masked[1, 0, 2] = -INF
    very_negative = torch.where(torch.isinf(masked), torch.tensor(-1e30), masked)
    kw = dict(evolution_rate=2.0, evolution_scale=5)
    limit = sled_details(final, very_negative, **kw)
    result = sled_details(final, masked, **kw)
    assert torch.allclose(result.logits, limit.logits, atol=1e-6)
    assert torch.allclose(result.layer_weights, limit.layer_weights, atol=1e-6)


def test_minus_inf_final_logits_stay_masked():
    final = torch.tensor([[1.0, -INF, 0.5, -INF, 0.0], [-INF] * 5])
    early = torch.tensor([[[0.0, 2.0, -INF, 1.0, 0.5], [-INF, 0.0, 1.0, -INF, 3.0]]]).repeat(
        2, 1, 1
    )
    result = sled_details(final, early, evolution_rate=2.0, evolution_scale=4)
    assert not torch.isnan(result.logits).any() and not torch.isnan(result.latent).any()
    row = result.logits[0]
    assert torch.isfinite(row[[0, 2, 4]]).all()
    kept_masked = [i for i in result.topk_indices[0].tolist() if i in (1, 3)]
    assert len(kept_masked) == 1 and row[kept_masked[0]].item() == -INF
    assert sorted(result.logits[1].tolist()).count(-1000.0) == 1
    assert sorted(result.logits[1].tolist())[:4] == [-INF] * 4


def test_huge_and_low_precision_inputs():
    gen = torch.Generator().manual_seed(9)
    final = torch.randn(2, 10, generator=gen)
    early = torch.randn(2, 3, 10, generator=gen)
    kw = dict(evolution_rate=2.0, evolution_scale=3)
    top = torch.finfo(torch.float32).max
    huge = sled_details(final / final.abs().max() * top, early / early.abs().max() * top, **kw)
    assert torch.isfinite(huge.latent).all() and not torch.isnan(huge.logits).any()
    assert huge.latent.sum(-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    for dtype in (torch.float16, torch.bfloat16):
        low = sled_evolve(final.to(dtype), early.to(dtype), **kw)
        assert low.dtype == dtype
        exact = sled_evolve_naive(final.to(dtype).double(), early.to(dtype).double(), **kw,
                                  dtype=torch.float64)
        # the exact result rounded to the low dtype: within one unit in the last place
        ulp = torch.finfo(dtype).eps * exact.abs().clamp_min(torch.finfo(dtype).tiny)
        assert ((low.double() - exact).abs() <= ulp).all(), dtype


def test_rows_are_independent():
    gen = torch.Generator().manual_seed(11)
    final = torch.randn(4, 30, generator=gen) * 2
    early = torch.randn(4, 6, 30, generator=gen) * 2
    final[2, 5] = early[1, 3, 8] = -INF

    def run(f, e):
        r = sled_details(f, e, evolution_rate=2.0, evolution_scale=6, op_T=2)
        return r.logits, r.latent, r.layer_weights, r.topk_indices

    for batched, alone in zip(run(final, early), rows_alone(run, final, early), strict=True):
        assert torch.allclose(batched, alone, atol=1e-6, rtol=0)


@given(data=st.data())
@DECODING
def test_properties(data):
    final, early = data.draw(layer_logits())
    (batch, vocab), dtype = final.shape, final.dtype
    k = data.draw(st.integers(1, vocab))
    lower = data.draw(st.sampled_from([-1000.0, -2500.0, -INF]))
    settings = dict(evolution_rate=data.draw(st.floats(0.1, 5.0)), evolution_scale=k,
                    evolution_lower_bound=lower, op_T=data.draw(st.integers(1, 3)))
    result = sled_details(final, early, **settings)
    # decoding's per-step call: the same numbers, without the whole-vocabulary intermediates
    step_logits, step_weights = sled_step(final, early, **settings)
    assert torch.equal(step_logits, result.logits)
    assert torch.equal(step_weights, result.layer_weights)
    out, topk = result.logits, result.topk_indices
    assert out.dtype == dtype and topk.shape == (batch, k)
    for t in (out, result.latent, result.layer_weights):
        assert not torch.isnan(t).any()
    p = torch.softmax(final.float(), -1)
    inside = torch.zeros_like(p, dtype=torch.bool).scatter(-1, topk, True)
    lowest_in = p.masked_fill(~inside, INF).amin(-1)
    assert (lowest_in >= p.masked_fill(inside, -INF).amax(-1)).all()
    assert (out[~inside] == torch.tensor(lower, dtype=dtype)).all()
    evolved_max = out.float().masked_fill(~inside, -INF).amax(-1)
    has_evolved = evolved_max > torch.tensor(lower, dtype=dtype).float()
    assert inside.gather(-1, out.float().argmax(-1, keepdim=True))[has_evolved].all()
    assert (torch.isfinite(out) | ~inside | ~torch.isfinite(final)).all()
    assert (result.latent >= 0).all() and (result.latent[~inside] == 0).all()
    for total in (result.latent.sum(-1), result.layer_weights.sum(-1)):
        assert ((total - 1).abs() < 1e-4).logical_or(total == 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(evolution_scale=0), "evolution_scale"),
        (dict(evolution_scale=9), "evolution_scale"),
        (dict(evolution_scale=2.0), "evolution_scale"),
        (dict(evolution_rate=0.0), "evolution_rate"),
        (dict(evolution_rate=-1.0), "evolution_rate"),
        (dict(op_T=0), "op_T"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    args = dict(evolution_rate=2.0, evolution_scale=3) | kwargs
    with pytest.raises(ValueError, match=match):
        sled_evolve(torch.zeros(2, 8), torch.zeros(2, 3, 8), **args)


@pytest.mark.parametrize(
    "final, early, match",
    [
        ((2, 8), (3, 3, 8), "B and V"),
        ((2, 8), (2, 3, 9), "B and V"),
        ((2, 8), (2, 8), "early_logits"),
        ((8,), (2, 3, 8), "final_logits"),
        ((2, 8), (2, 0, 8), "no layers"),
    ],
)
def test_bad_shapes(final, early, match):
    with pytest.raises(ValueError, match=match):
        sled_evolve(torch.zeros(final), torch.zeros(early), evolution_rate=2.0, evolution_scale=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_function_on_cuda_matches_cpu():
    from toolkit.decoding import (
        apply_temperature,
        dola_contrast,
        sample_tokens,
        temperature_log_probs,
        top_n_sigma,
    )

    gen = torch.Generator().manual_seed(12)
    final = torch.randn(3, 500, generator=gen) * 3
    early = torch.randn(3, 6, 500, generator=gen) * 3
    final[0, 7] = early[1, 2, 9] = -INF
    cuda = [final.cuda(), early.cuda()]
    kw = dict(evolution_rate=2.0, evolution_scale=20, op_T=3)
    assert torch.allclose(
        sled_evolve(*cuda, **kw).cpu(), sled_evolve(final, early, **kw), atol=1e-5
    )
    out, chosen = dola_contrast(*cuda)
    ref_out, ref_chosen = dola_contrast(final, early)
    assert torch.equal(chosen.cpu(), ref_chosen)
    assert torch.allclose(out.cpu(), ref_out, atol=1e-5)
    n = torch.tensor([1.0, 0.0, 2.0])
    assert torch.equal(top_n_sigma(cuda[0], n.cuda()).cpu(), top_n_sigma(final, n))
    t = torch.tensor([0.0, 0.5, 1.0])
    scaled = apply_temperature(cuda[0], t.cuda())
    assert torch.allclose(scaled.cpu(), apply_temperature(final, t))
    tokens = sample_tokens(scaled, generator=torch.Generator("cuda").manual_seed(0))
    assert tokens.device.type == "cuda" and tokens[0] == final[0].argmax()
    grid = torch.tensor([0.0, 0.3, 1.0])
    lp = temperature_log_probs(cuda[0], tokens, grid.cuda())
    assert torch.allclose(lp.cpu(), temperature_log_probs(final, tokens.cpu(), grid), atol=1e-5)
