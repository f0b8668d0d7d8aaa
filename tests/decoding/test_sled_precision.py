"""SLED's closed form on nearly one-hot layers: within 1e-5 of the literal (N, K, V) formulation
computed in float64, and of the same formulation in 60-digit decimal arithmetic where a layer
puts 1 - 1e-7 and beyond on one token (there float32 has no bits left for 1 - p, and float64
loses them from about 1 - 1e-12 on).

The closed form must not get its cosines from `<P, D> - D_i` and `|P|^2 - p_i^2`: on such a
layer both cancel to rounding noise and the cosine of the dominant token comes out wrong by
O(1) (the float32 literal loop of the reference code is off by O(1) here as well).
"""

import math
from decimal import Decimal, localcontext

import pytest
import torch
from _hypothesis import DECODING
from hypothesis import given
from hypothesis import strategies as st

from toolkit.decoding import sled_details, sled_evolve
from toolkit.decoding.reference import sled_evolve_naive

pytestmark = pytest.mark.usefixtures("both_paths")  # C kernels and torch ops (conftest.py)

TOLERANCE = 1e-5
_EPS = Decimal("1e-8")


def _softmax(xs):
    top = max(xs)
    exps = [(x - top).exp() for x in xs]
    total = sum(exps)
    return [e / total for e in exps]


def _norm(xs):
    return sum(x * x for x in xs).sqrt()


def _exact_row(z, layers, topk, alpha, op_t, lower):
    """The literal formulation of one row in 60-digit decimals: (V,) floats. `topk` is given
    (the closed form's own), so ties in the final layer cannot order the two differently."""
    with localcontext() as ctx:
        ctx.prec = 60
        z = [Decimal(float(x)) for x in z]
        ms = []
        for layer in layers:
            zn = [Decimal(float(x)) for x in layer]
            d = [a - b for a, b in zip(zn, z, strict=True)]
            pn = _softmax(zn)
            row = []
            for i in topk:
                g = [pj - (1 if j == i else 0) for j, pj in enumerate(pn)]
                dot = sum(a * b for a, b in zip(g, d, strict=True))
                cos = dot / (max(_norm(g), _EPS) * max(_norm(d), _EPS))
                row.append(max(cos, Decimal(0)) ** 2)
            ms.append(row)
        sums = [sum(m) for m in ms]
        ms = [[x / s for x in m] if s != 0 else m for m, s in zip(ms, sums, strict=True)]
        total = sum(sums)
        weights = [s / total if total != 0 else s for s in sums]
        latent = [Decimal(0)] * len(z)
        for w, m in zip(weights, ms, strict=True):
            for i, x in zip(topk, m, strict=True):
                latent[i] += w * x
        rate = Decimal(alpha)
        for t in range(op_t):
            q = _softmax(z)
            step = rate * (1 - Decimal(t) / op_t)
            z = [zi - step * (qi - li) for zi, qi, li in zip(z, q, latent, strict=True)]
        out = [float(lower)] * len(z)
        for i in topk:
            out[i] = float(z[i])
        return out


@st.composite
def near_one_hot(draw):
    """final (B, V) and early (B, N, V) float32 logits in [-4, 4], where some early layers put
    1 - 10**-t (t in [7, 20]) on one token, mostly a top token of the final layer, and the final
    layer is often peaked on the same token (so that token's cosine is not just negative)."""
    batch, layers, vocab = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(3, 12))
    value = st.floats(-4.0, 4.0, width=32)
    final = torch.tensor(draw(st.lists(value, min_size=batch * vocab, max_size=batch * vocab)))
    final = final.reshape(batch, vocab)
    count = batch * layers * vocab
    early = torch.tensor(draw(st.lists(value, min_size=count, max_size=count)))
    early = early.reshape(batch, layers, vocab)
    digits = []
    for b in range(batch):
        for n in range(layers):
            if not draw(st.booleans()):
                continue
            token = draw(st.sampled_from([int(final[b].argmax()), draw(st.integers(0, vocab - 1))]))
            t = draw(st.floats(7.0, 20.0))
            gap = math.log((vocab - 1) / 10.0**-t)
            early[b, n, token] = early[b, n].max() + gap
            digits.append(t)
            if draw(st.booleans()):
                final[b, token] = early[b, n, token] + draw(st.floats(-3.0, 3.0))
    return final, early, max(digits, default=0.0)


@given(data=st.data())
@DECODING
def test_near_one_hot_layers_match_exact_and_float64_literal(data):
    final, early, digits = data.draw(near_one_hot())
    k = data.draw(st.integers(1, final.shape[1]))
    kw = dict(evolution_rate=data.draw(st.floats(0.5, 5.0)), evolution_scale=k,
              evolution_lower_bound=-100.0, op_T=data.draw(st.integers(1, 3)))
    result = sled_details(final, early, **kw)
    got, topk = result.logits.double(), result.topk_indices
    exact = torch.tensor([
        _exact_row(final[b], early[b], topk[b].tolist(), kw["evolution_rate"], kw["op_T"], -100.0)
        for b in range(final.shape[0])
    ], dtype=torch.float64)
    assert (got - exact).abs().max().item() <= TOLERANCE
    distinct = all(len(set(row.tolist())) == len(row) for row in torch.softmax(final, -1))
    if digits <= 10 and distinct:  # float64 keeps 1 - p to ~1e-6 relative up to 1 - 1e-10
        literal = sled_evolve_naive(final, early, dtype=torch.float64, **kw)
        assert (got - literal).abs().max().item() <= TOLERANCE


def test_one_hot_layer_from_a_real_model_case():
    """A layer with p = 0.99999997 on the final layer's top token (the SmolLM2-135M case): the
    float32 literal loop gets that token's share wrong, the closed form agrees with float64."""
    gen = torch.Generator().manual_seed(4)
    final = torch.randn(1, 64, generator=gen) * 2
    early = torch.randn(1, 3, 64, generator=gen) * 2
    top = int(final.argmax())
    early[0, 1, top] = early[0, 1].max() + math.log(63 / 3e-8)
    final[0, top] = early[0, 1, top] - 0.5
    kw = dict(evolution_rate=2.5, evolution_scale=10, evolution_lower_bound=-100.0, op_T=10)
    literal64 = sled_evolve_naive(final, early, dtype=torch.float64, **kw)
    assert (sled_evolve(final, early, **kw).double() - literal64).abs().max() <= TOLERANCE
    p = torch.softmax(early[0, 1].double(), -1)[top].item()
    assert 1 - 1e-7 < p < 1.0


@pytest.mark.parametrize("digits", [7, 12, 30])
def test_exactly_one_hot_in_float32(digits):
    """p_a rounds to 1.0 in float32 (and in float64 from 1 - 1e-16 on): its tail is still seen."""
    final = torch.tensor([[3.0, 2.0, 0.5, -1.0, 0.0]])
    early = torch.tensor([[[0.0, 1.0, -0.5, 0.3, 0.2], [1.0, 0.0, 2.0, -1.0, 0.5]]])
    early[0, 0, 0] = math.log(4 / 10.0**-digits)
    final[0, 0] = early[0, 0, 0] + 2.0  # D_a < 0: the dominant token gets a positive cosine
    kw = dict(evolution_rate=2.0, evolution_scale=3)
    result = sled_details(final, early, **kw)
    exact = _exact_row(final[0], early[0], result.topk_indices[0].tolist(), 2.0, 1, -1000.0)
    assert result.logits[0].double().tolist() == pytest.approx(exact, abs=TOLERANCE)
    assert result.layer_weights[0, 0].item() > 0.0  # the one-hot layer still has a direction
