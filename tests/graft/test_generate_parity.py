"""With every feature off, AugmentedModel.generate is the base model's generate(), token for token."""

from __future__ import annotations

import pytest
import torch
from _generation import PARITY_FAMILIES, graft, prompt_batch, reference_generate
from transformers import LogitsProcessorList
from transformers.generation.streamers import BaseStreamer

from toolkit.core.errors import ConfigError
from toolkit.decoding import top_n_sigma
from toolkit.graft import TopNSigmaLogitsProcessor
from toolkit.graft.tap import EarlyExitTap

NEW = 8


@pytest.fixture(scope="module", params=PARITY_FAMILIES)
def family_model(request, tiny_model_dir):
    model = graft(tiny_model_dir(request.param))
    return model, *prompt_batch(model.tokenizer)


def _no_hooks(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_greedy_parity(family_model, monkeypatch):
    model, ids, mask = family_model
    expected = model.base.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW)

    def no_capture(*args, **kwargs):
        raise AssertionError("no feature is on: the tap must not hook anything")

    monkeypatch.setattr(EarlyExitTap, "capture", no_capture)
    got = model.generate(ids, mask, max_new_tokens=NEW)
    assert torch.equal(got, expected)
    assert len(set(got[:, -NEW:].flatten().tolist())) > 2, "degenerate replies test nothing"
    assert _no_hooks(model.base)


def test_seeded_sampling_parity(family_model):
    model, ids, mask = family_model
    kwargs = dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, max_new_tokens=NEW)
    torch.manual_seed(123)
    expected = model.base.generate(ids, attention_mask=mask, **kwargs)
    got = model.generate(ids, mask, seed=123, **kwargs)
    assert torch.equal(got, expected)
    assert torch.equal(model.generate(ids, mask, seed=123, **kwargs), got)
    other = model.generate(ids, mask, seed=7, **kwargs)
    assert not torch.equal(other, got), "different seeds should give different samples"


def test_repetition_penalty_parity(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    ids, mask = prompt_batch(model.tokenizer)
    expected = model.base.generate(ids, attention_mask=mask, do_sample=False,
                                   repetition_penalty=1.3, max_new_tokens=NEW)
    assert torch.equal(model.generate(ids, mask, repetition_penalty=1.3, max_new_tokens=NEW),
                       expected)


def test_streamer_and_no_leftover_hooks(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    ids, mask = prompt_batch(model.tokenizer, ["The quick brown fox"])

    class Collect(BaseStreamer):
        def __init__(self):
            self.chunks = []

        def put(self, value):
            self.chunks.append(value.flatten().tolist())

        def end(self):
            self.chunks.append("end")

    streamer = Collect()
    out = model.generate(ids, mask, sled=True, adaptive_temperature=True, streamer=streamer,
                         max_new_tokens=4)
    streamed = [t for chunk in streamer.chunks[1:-1] for t in chunk]
    assert streamed == out[0, ids.shape[1]:].tolist()
    assert streamer.chunks[-1] == "end"
    assert _no_hooks(model.base)


def test_unknown_option_and_bad_scale_name_the_key(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    ids, mask = prompt_batch(model.tokenizer)
    with pytest.raises(ConfigError, match="sled.evolution_scale=301.*300"):
        model.generate(ids, mask, sled={"enabled": True, "evolution_scale": 301})
    with pytest.raises(ConfigError, match="unknown generate option 'topk'"):
        model.generate(ids, mask, topk=3)


def test_top_n_sigma_processor_on_plain_model(tiny_llama_dir):
    """A plain transformers generate() with TopNSigmaLogitsProcessor equals a cache-free loop
    that filters with top_n_sigma and samples with the same seeded global RNG."""
    model = graft(tiny_llama_dir)
    base, (ids, mask) = model.base, prompt_batch(model.tokenizer)

    def pick(final, hidden_states):
        probs = torch.softmax(top_n_sigma(final, 1.0), dim=-1)
        return torch.multinomial(probs, 1).squeeze(1)

    torch.manual_seed(5)
    expected = reference_generate(base, ids, mask, NEW, pick)
    torch.manual_seed(5)
    got = base.generate(ids, attention_mask=mask, do_sample=True, top_k=0, max_new_tokens=NEW,
                        logits_processor=LogitsProcessorList([TopNSigmaLogitsProcessor(1.0)]))
    assert torch.equal(got, expected)
    assert torch.equal(model.generate(ids, mask, do_sample=True, top_n_sigma=1.0, seed=5,
                                      max_new_tokens=NEW), expected)
