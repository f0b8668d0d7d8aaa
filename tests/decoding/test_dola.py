"""DoLa (docs/methods.md section 3): the reference's F.kl_div JSD, per-row layer choice, relative-top filter,
hand-derived values, -inf handling, properties, row independence, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from _hypothesis import DECODING, layer_logits, rows_alone
from hypothesis import given
from hypothesis import strategies as st

from toolkit.decoding import dola_contrast, layer_divergences

pytestmark = pytest.mark.usefixtures("both_paths")  # C kernels and torch ops (conftest.py)

INF = math.inf


def _reference_row(final, early, relative_top=0.1):
    """The reference code's computation for one row (F.kl_div JSD, relative-top filter)."""
    mature = F.softmax(final, -1)
    premature = F.softmax(early, -1)
    mix = 0.5 * (mature[None] + premature)
    kl1 = F.kl_div(F.log_softmax(final, -1)[None], mix, reduction="none").mean(-1)
    kl2 = F.kl_div(F.log_softmax(early, -1), mix, reduction="none").mean(-1)
    jsd = 0.5 * (kl1 + kl2)
    layer = int(jsd.argmax())
    log_final = F.log_softmax(final, -1)
    keep = log_final >= log_final.max() + math.log(relative_top)
    out = torch.where(keep, log_final - F.log_softmax(early[layer], -1), torch.tensor(-INF))
    return out, layer, jsd


def _log_softmax(xs):
    top = max(xs)
    lse = top + math.log(sum(math.exp(x - top) for x in xs))
    return [x - lse for x in xs]


def _hand_jsd(final, layer):
    p, q = [math.exp(x) for x in _log_softmax(final)], [math.exp(x) for x in _log_softmax(layer)]
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    kl_p = sum(mi * (math.log(mi) - math.log(pi)) for mi, pi in zip(m, p, strict=True)) / len(m)
    kl_q = sum(mi * (math.log(mi) - math.log(qi)) for mi, qi in zip(m, q, strict=True)) / len(m)
    return 0.5 * (kl_p + kl_q)


@pytest.mark.parametrize("relative_top", [0.1, 0.5, 1.0])
def test_matches_reference_per_row(relative_top):
    gen = torch.Generator().manual_seed(int(relative_top * 10))
    final = torch.randn(4, 40, generator=gen) * 2
    early = torch.randn(4, 5, 40, generator=gen) * 2
    out, chosen = dola_contrast(final, early, relative_top=relative_top)
    for b in range(4):
        ref, layer, _ = _reference_row(final[b], early[b], relative_top)
        assert chosen[b].item() == layer
        assert torch.equal(torch.isinf(out[b]), torch.isinf(ref))
        assert torch.allclose(out[b], ref, atol=1e-6)


def test_hand_derived_v3():
    final, same, other = [2.0, 1.0, -1.0], [2.0, 1.0, -1.0], [0.0, 2.0, 0.5]
    assert abs(_hand_jsd(final, same)) < 1e-12 < _hand_jsd(final, other)
    out, chosen = dola_contrast(torch.tensor([final]), torch.tensor([[same, other]]))
    jsd = layer_divergences(torch.tensor([final]), torch.tensor([[same, other]]))
    assert jsd[0].tolist() == pytest.approx([0.0, _hand_jsd(final, other)], abs=1e-7)
    assert chosen.tolist() == [1]
    log_final, log_other = _log_softmax(final), _log_softmax(other)
    assert log_final[2] < max(log_final) + math.log(0.1) < log_final[1]
    expected = [log_final[0] - log_other[0], log_final[1] - log_other[1]]
    assert out[0, :2].tolist() == pytest.approx(expected, abs=1e-6)
    assert out[0, 2].item() == -INF


def test_each_row_picks_its_own_layer():
    final = torch.tensor([[3.0, 0.0, 0.0, -1.0]] * 2)
    near, far = (
        final[0] + 0.1 * torch.tensor([1.0, -1.0, 0.0, 0.0]),
        torch.tensor([0.0, 3.0, 1.0, 2.0]),
    )
    early = torch.stack([torch.stack([near, far]), torch.stack([far, near])])
    out, chosen = dola_contrast(final, early)
    assert chosen.tolist() == [1, 0]
    assert torch.equal(out[0], out[1])


def test_relative_top_one_keeps_only_the_top_tokens():
    final = torch.tensor([[1.0, 4.0, 4.0, 3.9]])
    out, _ = dola_contrast(final, torch.zeros(1, 2, 4), relative_top=1.0)
    assert torch.isfinite(out[0]).tolist() == [False, True, True, False]


def test_premature_minus_inf_gives_largest_finite_value():
    final = torch.tensor([[1.0, 0.0, 0.9]])
    early = torch.tensor([[[-INF, 0.0, 0.0]]])
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        out, _ = dola_contrast(final.to(dtype), early.to(dtype))
        assert out.dtype == dtype
        assert out[0, 0].item() == torch.finfo(dtype).max
        assert torch.isfinite(out[0, 1:]).all()


def test_rows_are_independent():
    gen = torch.Generator().manual_seed(2)
    final = torch.randn(5, 25, generator=gen) * 3
    early = torch.randn(5, 4, 25, generator=gen) * 3
    final[1, 3] = early[2, 1, 0] = -INF
    batched = dola_contrast(final, early)
    for full, alone in zip(batched, rows_alone(dola_contrast, final, early), strict=True):
        assert torch.equal(full, alone)


@given(data=st.data())
@DECODING
def test_properties(data):
    final, early = data.draw(layer_logits())
    (batch, layers, _), dtype = early.shape, final.dtype
    relative_top = data.draw(st.one_of(st.sampled_from([0.1, 1.0]), st.floats(0.001, 1.0)))
    out, chosen = dola_contrast(final, early, relative_top=relative_top)
    assert out.dtype == dtype and chosen.dtype == torch.long
    assert ((chosen >= 0) & (chosen < layers)).all()
    assert not torch.isnan(out).any() and not (out == INF).any()
    log_final = torch.log_softmax(final.float(), -1)
    expected_keep = log_final >= log_final.amax(-1, keepdim=True) + math.log(relative_top)
    assert torch.equal(out > -INF, expected_keep)
    assert (expected_keep.sum(-1) >= 1).all()
    if torch.isfinite(final).all() and torch.isfinite(early).all():
        for b in range(batch):
            _, _, jsd = _reference_row(final[b].float(), early[b].float(), relative_top)
            assert jsd[chosen[b]].item() == pytest.approx(jsd.max().item(), rel=1e-5, abs=1e-30)


@pytest.mark.parametrize(
    "final, early, relative_top, match",
    [
        ((2, 8), (3, 3, 8), 0.1, "B and V"),
        ((2, 8), (2, 3, 7), 0.1, "B and V"),
        ((2, 8), (2, 8), 0.1, "early_logits"),
        ((2, 8), (2, 0, 8), 0.1, "no layers"),
        ((2, 8), (2, 3, 8), 0.0, "relative_top"),
        ((2, 8), (2, 3, 8), 1.5, "relative_top"),
    ],
)
def test_bad_input(final, early, relative_top, match):
    with pytest.raises(ValueError, match=match):
        dola_contrast(torch.zeros(final), torch.zeros(early), relative_top=relative_top)


@pytest.mark.parametrize("block", [1, 10_000])
def test_block_divergences_match_the_reference_formula(monkeypatch, block):
    """The fused JSD (one block of rows at a time) equals F.kl_div's, finite or not."""
    import toolkit.decoding.blocks as blocks
    import toolkit.decoding.dola as dola

    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", block)
    gen = torch.Generator().manual_seed(21)
    final = torch.randn(6, 300, generator=gen) * 4
    early = torch.randn(6, 5, 300, generator=gen) * 4 + final.unsqueeze(1)
    early[2, 1, :250] -= 60  # a peaked layer: mixture entries underflow towards 0
    early[4, 3, 7] = -INF
    jsd = layer_divergences(final, early)
    for b in (0, 1, 2, 3, 5):
        _, _, expected = _reference_row(final[b], early[b])
        assert torch.allclose(jsd[b], expected, rtol=1e-5, atol=1e-9)
    assert torch.equal(jsd[4], dola._clamped_divergences(final[4:5], early[4:5])[0])


def test_ties_pick_the_first_of_the_most_distant_layers():
    """Two candidates with the same (largest) divergence: the earlier one wins, in every row,
    whatever else lies between or after them."""
    final = torch.tensor([[3.0, 0.0, 0.0, -1.0]])
    near = final[0] + 0.1 * torch.tensor([1.0, -1.0, 0.0, 0.0])
    far = torch.tensor([0.0, 3.0, 1.0, 2.0])
    for layers, first in (([far, far], 0), ([near, far, far], 1), ([far, near, far], 0),
                          ([near, far, near, far, near], 1)):
        early = torch.stack(layers)[None]
        jsd = layer_divergences(final, early)[0]
        assert jsd.max().item() > 0 and (jsd == jsd.max()).sum().item() >= 2
        _, chosen = dola_contrast(final, early)
        assert chosen.tolist() == [first], layers


def test_masked_final_tokens_stay_masked():
    """A token at -inf in the final logits is not revived, even in a row where every token is
    masked (log_softmax of such a row would otherwise make every token finite)."""
    early = torch.tensor([[[0.5, 0.0, -0.5, 1.0]], [[0.5, 0.0, -0.5, 1.0]]])
    final = torch.tensor([[-INF] * 4, [2.0, -INF, 1.9, -INF]])
    out, _ = dola_contrast(final, early, relative_top=1e-9)
    assert torch.isinf(out[0]).all() and (out[0] < 0).all()
    assert torch.isfinite(out[1]).tolist() == [True, False, True, False]
    assert (out[1, [1, 3]] == -INF).all()
