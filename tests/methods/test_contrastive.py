"""Contrastive decoding as a method: generation equal to a cache-free reference, and the registry
wiring (eval, modes); its math: tests/decoding/test_contrastive.py."""

from __future__ import annotations

import pytest
import torch
from _generation import early_logits, graft, prompt_batch, reference_generate

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.decoding import contrastive_logits, contrastive_scores
from toolkit.eval.scoring import encode_pair, score_pairs
from toolkit.methods.options import DecodingConfig, with_overrides


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
