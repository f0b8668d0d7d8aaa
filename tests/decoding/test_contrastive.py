"""Contrastive decoding's math against an early "amateur" layer: hand-derived golden values and a
property test (the method through generate and eval: tests/methods/test_contrastive.py)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.decoding import contrastive_logits, contrastive_scores

LN2, LN4 = math.log(2.0), math.log(4.0)
# Expert p = [1/2, 1/4, 1/4] (logits ln 2, 0, 0).
EXPERT = torch.tensor([[LN2, 0.0, 0.0]])


def test_golden_uniform_amateur():
    # Amateur q = [1/3, 1/3, 1/3]; alpha 0.5 keeps p >= 1/4, i.e. every token:
    # log(p/q) = [ln(3/2), ln(3/4), ln(3/4)].
    out = contrastive_logits(EXPERT, torch.zeros(1, 3), alpha=0.5)
    expected = torch.tensor([[math.log(1.5), math.log(0.75), math.log(0.75)]])
    torch.testing.assert_close(out, expected)


def test_golden_confident_amateur_flips_the_choice():
    # Amateur q = [4/6, 1/6, 1/6]: log(p/q) = [ln(3/4), ln(3/2), ln(3/2)], so token 1 wins
    # although the expert prefers token 0.
    amateur = torch.tensor([[LN4, 0.0, 0.0]])
    out = contrastive_logits(EXPERT, amateur, alpha=0.5)
    expected = torch.tensor([[math.log(0.75), math.log(1.5), math.log(1.5)]])
    torch.testing.assert_close(out, expected)
    assert int(out.argmax()) == 1
    # alpha 0.6 keeps only p >= 0.3: token 0 alone, the others are -inf (or the scoring value).
    strict = contrastive_logits(EXPERT, amateur, alpha=0.6)
    assert strict[0, 0] == pytest.approx(math.log(0.75)) and torch.isinf(strict[0, 1:]).all()
    scores = contrastive_scores(EXPERT, amateur, torch.tensor([0]), alpha=0.6)
    assert float(scores) == pytest.approx(math.log(0.75))
    filtered = contrastive_scores(EXPERT, amateur, torch.tensor([2]), alpha=0.6)
    assert float(filtered) == -1000.0


def test_minus_inf_logits_give_no_nan():
    final = torch.tensor([[2.0, 1.0, -math.inf, 0.5]])
    amateur = torch.tensor([[-math.inf, 0.0, 0.0, 0.0]])
    out = contrastive_logits(final, amateur, alpha=0.1)
    assert not torch.isnan(out).any() and out[0, 2] == -math.inf
    assert out[0, 0] == torch.finfo(torch.float32).max  # kept, but ruled out by the amateur
    with pytest.raises(ValueError, match="alpha"):
        contrastive_logits(final, amateur, alpha=0.0)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_property_plausible_set_and_self_contrast(data):
    vocab = data.draw(st.integers(2, 12))
    values = st.floats(-20, 20, allow_nan=False, width=32)
    final = torch.tensor([data.draw(st.lists(values, min_size=vocab, max_size=vocab))])
    alpha = data.draw(st.floats(0.01, 1.0))
    out = contrastive_logits(final, final.clone(), alpha=alpha)
    probs = final.softmax(-1)
    kept = torch.isfinite(out)
    assert kept[0, probs[0].argmax()]
    # Against itself every plausible token scores log(p/p) = 0.
    assert torch.allclose(out[kept], torch.zeros_like(out[kept]), atol=1e-5)
    log_p = final.log_softmax(-1)
    expected = log_p >= log_p.max() + math.log(alpha)
    assert torch.equal(kept, expected)
