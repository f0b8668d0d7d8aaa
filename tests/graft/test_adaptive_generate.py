"""Generation with the AdaptiveDecoder head: untrained head, greedy temperature 0, records."""

from __future__ import annotations

import pytest
import torch
from _generation import graft, prompt_batch

from toolkit.graft.records import reply_mask
from toolkit.graft.tap import EarlyExitTap

NEW = 6


@pytest.fixture(scope="module")
def model(tiny_llama_dir):
    return graft(tiny_llama_dir)


def test_untrained_head_is_uniform_and_features_are_final_norm(model):
    ids, mask = prompt_batch(model.tokenizer)
    features = model.head_features(ids, mask)
    with torch.no_grad():
        ref = model.base(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    assert features.shape == (3, ids.shape[1], 64) and torch.allclose(features, ref, atol=1e-5)
    probs = torch.softmax(model.head(features), dim=-1)
    assert torch.allclose(probs, torch.full_like(probs, 1 / 6))


@pytest.fixture(scope="module")
def token_model(tiny_llama_dir):
    return graft(tiny_llama_dir, level="token")


def test_zero_temperature_grid_is_greedy_even_when_sampling(tiny_llama_dir):
    for level in ("sequence", "token"):
        model = graft(tiny_llama_dir, temperatures=[0.0], level=level)
        ids, mask = prompt_batch(model.tokenizer)
        greedy = model.generate(ids, mask, max_new_tokens=NEW)
        out = model.generate(ids, mask, do_sample=True, seed=1, adaptive_temperature=True,
                             max_new_tokens=NEW, return_records=True)
        assert torch.equal(out.sequences, greedy)
        assert (out.temperature == 0).all() and (out.temperature_index == 0).all()
    sampled = model.generate(ids, mask, do_sample=True, seed=1, max_new_tokens=NEW)
    assert not torch.equal(sampled, greedy), "plain sampling should differ from greedy"
    assert torch.equal(model.generate(ids, mask, do_sample=True, temperature=0.0, seed=1,
                                      max_new_tokens=NEW), greedy)


def test_index_zero_choice_is_greedy(model):
    """The untrained head's argmax picks index 0 (ties go to the first), i.e. temperature 0."""
    ids, mask = prompt_batch(model.tokenizer)
    out = model.generate(ids, mask, do_sample=True, seed=2, adaptive_temperature=True,
                         max_new_tokens=NEW, return_records=True)
    assert (out.temperature_index == 0).all()
    assert torch.equal(out.sequences, model.generate(ids, mask, max_new_tokens=NEW))


def test_token_level_records_and_sampled_choice(token_model):
    model = token_model
    ids, mask = prompt_batch(model.tokenizer)
    kwargs = dict(do_sample=True, seed=4, max_new_tokens=NEW, return_records=True,
                  adaptive_temperature={"enabled": True, "choice": "sample"})
    out = model.generate(ids, mask, **kwargs)
    assert out.temperature_index.shape == (3, NEW) and out.temperature.shape == (3, NEW)
    assert out.temperature_index.dtype == torch.long
    assert torch.equal(out.temperature, model.head.temperatures[out.temperature_index].float())
    assert out.temperature_index.unique().numel() >= 3, "uniform sampling should vary the index"
    again = model.generate(ids, mask, **kwargs)
    assert torch.equal(again.temperature_index, out.temperature_index)
    assert torch.equal(again.sequences, out.sequences)
    assert out.sled_layer_weights is None and out.dola_layer is None and out.layers is None
    assert out.reply_mask.shape == (3, NEW) and out.reply_mask.dtype == torch.bool


def test_sequence_level_keeps_one_temperature_per_row(model):
    ids, mask = prompt_batch(model.tokenizer)
    out = model.generate(ids, mask, do_sample=True, seed=9, max_new_tokens=NEW,
                         adaptive_temperature={"enabled": True, "choice": "sample"},
                         return_records=True)
    index = out.temperature_index
    assert torch.equal(index, index[:, :1].expand_as(index))


def test_reply_mask_marks_tokens_up_to_eos():
    replies = torch.tensor([[5, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0]])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(reply_mask(replies, [2]), expected)
    assert reply_mask(replies, []).all()


def test_generation_records_rows_after_eos(tiny_llama_dir):
    """Make row 0 say eos at once: its later steps are still recorded, and masked out."""
    model = graft(tiny_llama_dir, level="token")
    ids, mask = prompt_batch(model.tokenizer)
    eos = model.base.generation_config.eos_token_id
    last = model.head_features(ids, mask)[:, -1]
    with torch.no_grad():
        model.parts.lm_head.weight[eos] = last[0] * 50 / last[0].norm() ** 2
    out = model.generate(ids, mask, max_new_tokens=NEW, adaptive_temperature=True,
                         return_records=True)
    replies = out.sequences[:, ids.shape[1]:]
    assert replies[0, 0] == eos and replies.shape[1] > 1
    assert (replies[0, 1:] == model.base.generation_config.pad_token_id).all()
    assert out.temperature_index.shape == replies.shape
    assert out.reply_mask[0].tolist() == [True] + [False] * (replies.shape[1] - 1)
    assert out.reply_mask[1:, 0].all()


def test_hooks_only_what_each_feature_needs(model, monkeypatch):
    """Adaptive alone hooks only the final norm (layer L); SLED hooks its own layers."""
    captured = []
    original = EarlyExitTap.capture

    def spy(self, *args, **kwargs):
        captured.append(list(self.candidate_layers))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EarlyExitTap, "capture", spy)
    ids, mask = prompt_batch(model.tokenizer)
    model.generate(ids, mask, adaptive_temperature=True, max_new_tokens=2)
    model.generate(ids, mask, sled={"enabled": True, "layers": "low"}, max_new_tokens=2)
    model.generate(ids, mask, dola=True, adaptive_temperature=True, max_new_tokens=2)
    model.generate(ids, mask, top_n_sigma=1.0, do_sample=True, max_new_tokens=2)
    assert captured == [[4], [0], [0, 1, 2, 3]]
