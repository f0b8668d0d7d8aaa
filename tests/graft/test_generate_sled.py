"""SLED and DoLa generation equal a step-by-step recomputation without cache (the reference
semantics), batch of 3 with left padding; the plain-model SledLogitsProcessor does too."""

from __future__ import annotations

import pytest
import torch
from _generation import (
    PARITY_FAMILIES,
    early_logits,
    graft,
    prompt_batch,
    reference_generate,
    small_graft,
)
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

from toolkit.core.errors import ConfigError
from toolkit.decoding import dola_contrast, sled_details, sled_evolve
from toolkit.graft import AugmentedModel, SledLogitsProcessor
from toolkit.graft.tap import EarlyExitTap
from toolkit.methods.options import SledOptions

NEW = 6
SLED = dict(evolution_rate=10.0, evolution_scale=20)  # strong enough to change tiny models' tokens


def _sled_pick(model, layers, norm=None, **kw):
    def pick(final, hidden_states):
        evolved = sled_evolve(final, early_logits(model, hidden_states, layers, norm), **kw)
        return evolved.argmax(-1)

    return pick


@pytest.mark.parametrize("family", PARITY_FAMILIES)
def test_sled_generation_equals_cache_free_reference(family, tiny_model_dir):
    model = graft(tiny_model_dir(family))
    ids, mask = prompt_batch(model.tokenizer)
    layers = model.tap.candidate_layers
    assert layers == ([1, 2, 3] if model.parts.tied else [0, 1, 2, 3])
    norm = model.parts.norm if model.tap.early_exit_norm else None  # Gemma 3's default
    expected = reference_generate(model.base, ids, mask, NEW,
                                  _sled_pick(model.base, layers, norm, **SLED))
    out = model.generate(ids, mask, sled={"enabled": True, **SLED}, max_new_tokens=NEW,
                         return_records=True)
    assert torch.equal(out.sequences, expected)
    plain = model.generate(ids, mask, max_new_tokens=NEW)
    assert not torch.equal(plain, expected), "SLED should change some token of this batch"
    weights = out.sled_layer_weights
    assert weights.shape == (3, NEW, len(layers)) and out.layers == layers
    sums = weights.sum(-1)
    assert torch.all(((sums - 1).abs() < 1e-5) | (sums == 0)) and (weights >= 0).all()


def test_sled_layer_subset_and_record_values(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    ids, mask = prompt_batch(model.tokenizer)
    options = {"enabled": True, "layers": [0, 2], **SLED}
    out = model.generate(ids, mask, sled=options, max_new_tokens=3, return_records=True)
    expected = reference_generate(model.base, ids, mask, 3, _sled_pick(model.base, [0, 2], **SLED))
    assert torch.equal(out.sequences, expected) and out.layers == [0, 2]
    with torch.no_grad():
        full = model.base(ids, attention_mask=mask, output_hidden_states=True)
    first = sled_details(full.logits[:, -1].float(),
                         early_logits(model.base, full.hidden_states, [0, 2]), **SLED)
    assert torch.allclose(out.sled_layer_weights[:, 0], first.layer_weights, atol=1e-5)
    assert out.temperature is None and out.dola_layer is None


def test_dola_generation_equals_cache_free_reference(tiny_model_dir):
    model = graft(tiny_model_dir("gemma2"))
    ids, mask = prompt_batch(model.tokenizer)
    layers = model.tap.candidate_layers
    chosen_steps = []

    def pick(final, hidden_states):
        logits, chosen = dola_contrast(final, early_logits(model.base, hidden_states, layers),
                                       relative_top=0.1)
        chosen_steps.append(torch.as_tensor(layers)[chosen])
        return logits.argmax(-1)

    expected = reference_generate(model.base, ids, mask, NEW, pick)
    out = model.generate(ids, mask, dola=True, max_new_tokens=NEW, return_records=True)
    assert torch.equal(out.sequences, expected)
    assert torch.equal(out.dola_layer, torch.stack(chosen_steps, dim=1))
    assert out.sled_layer_weights is None


def test_sled_processor_on_plain_model(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    base, (ids, mask) = model.base, prompt_batch(model.tokenizer)
    tap = EarlyExitTap(base, layers="high")
    expected = reference_generate(base, ids, mask, NEW,
                                  _sled_pick(base, tap.candidate_layers, **SLED))
    processor = SledLogitsProcessor(tap, SledOptions(enabled=True, **SLED))
    with tap.capture(last_only=True):
        got = base.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW,
                            logits_processor=LogitsProcessorList([processor]))
    assert torch.equal(got, expected)
    with pytest.raises(ConfigError, match=r"sled.layers='low'.*build the tap"):
        SledLogitsProcessor(tap, SledOptions(enabled=True, layers="low"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_sled_generation_on_gpu(tiny_llama_dir):
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16).to("cuda")
    model = AugmentedModel.graft(base, small_graft(), tokenizer=AutoTokenizer.from_pretrained(tiny_llama_dir))
    ids, mask = prompt_batch(model.tokenizer)
    out = model.generate(ids, mask, sled={"enabled": True, **SLED}, max_new_tokens=NEW,
                         return_records=True)
    assert out.sequences.device.type == "cuda"
    assert torch.isfinite(out.sled_layer_weights).all()
    sums = out.sled_layer_weights.sum(-1)
    assert torch.all(((sums - 1).abs() < 1e-3) | (sums == 0))
    sampled = model.generate(ids, mask, sled=True, do_sample=True, seed=0, top_n_sigma=1.0,
                             max_new_tokens=NEW)
    assert ((sampled >= 0) & (sampled < 300)).all()
