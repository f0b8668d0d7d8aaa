"""Contrastive decoding against an early "amateur" layer: hand-derived golden values, a property
test, generation equal to a cache-free reference, and the registry wiring (eval, modes)."""

from __future__ import annotations

import math

import pytest
import torch
from _generation import early_logits, graft, prompt_batch, reference_generate
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.decoding import contrastive_logits, contrastive_scores
from toolkit.eval.scoring import encode_pair, score_pairs
from toolkit.methods.options import DecodingConfig, with_overrides

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


def _pick(base, layer: int, alpha: float):
    def pick(final, hidden_states):
        amateur = early_logits(base, hidden_states, [layer])[:, 0]
        return contrastive_logits(final, amateur, alpha=alpha).argmax(-1)

    return pick


def test_generation_equals_cache_free_reference(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    ids, mask = prompt_batch(model.tokenizer)
    options = {"layers": [1], "alpha": 0.05}
    out = model.generate(ids, mask, contrastive=options, max_new_tokens=6, return_records=True)
    expected = reference_generate(model.base, ids, mask, 6, _pick(model.base, 1, 0.05))
    assert torch.equal(out.sequences, expected) and out.layers == [1]
    assert not torch.equal(out.sequences, model.generate(ids, mask, max_new_tokens=6))


def test_registered_everywhere(tiny_llama_dir):
    assert "contrastive" in methods.generation_modes() and "contrastive" in methods.scoring_modes()
    with pytest.raises(ConfigError, match="enable at most one"):
        with_overrides(None, sled=True, contrastive=True)
    model = graft(tiny_llama_dir)
    pair = ("Q: Name a color.\nA:", " Red.")
    decoding = with_overrides(DecodingConfig(), contrastive={"alpha": 0.5})
    got = score_pairs(model, [pair], ["contrastive"], decoding)["contrastive"][0]
    ids, start = encode_pair(model.tokenizer, *pair)
    with torch.no_grad():
        out = model.base(torch.tensor([ids]), output_hidden_states=True)
    rows = slice(start - 1, len(ids) - 1)
    final = out.logits[0, rows]
    first = model.tap.candidate_layers[0]
    amateur = model.base.get_output_embeddings()(out.hidden_states[first][0, rows])
    expected = contrastive_scores(final, amateur, torch.tensor(ids[start:]), alpha=0.5).sum()
    assert got == pytest.approx(float(expected), rel=1e-6, abs=1e-3)
