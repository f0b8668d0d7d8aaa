"""The invariants of the tiny-model tests, on the real pretrained model (SmolLM2-135M-Instruct,
30 layers, tied embeddings): parity with plain generate() when every feature is off, the tap
at layer L equals the model's logits, SLED equals the cache-free step-by-step reference."""

from __future__ import annotations

import pytest
import torch
from _generation import early_logits, prompt_batch, reference_generate
from transformers import AutoModelForCausalLM, AutoTokenizer

from toolkit.decoding import sled_evolve
from toolkit.graft import AugmentedModel
from toolkit.graft.tap import EarlyExitTap
from toolkit.options import GraftConfig, HeadConfig

pytestmark = pytest.mark.real

PROMPTS = ["The capital of France is", "Once upon a time, a small robot named Bo", "Question: what is 2 + 3? Answer:"]
NEW = 8
L = 30


@pytest.fixture(scope="module")
def real(real_model_dir):
    base = AutoModelForCausalLM.from_pretrained(real_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(real_model_dir)
    tokenizer.padding_side = "left"
    model = AugmentedModel.graft(base, GraftConfig(head=HeadConfig(hidden_size=16)),
                                 tokenizer=tokenizer)
    return model, *prompt_batch(tokenizer, PROMPTS)


def test_the_dequantized_model_knows_paris(real):
    model, ids, mask = real
    out = model.generate(ids, mask, max_new_tokens=3)
    assert model.tokenizer.decode(out[0, ids.shape[1]:]).startswith(" Paris")
    assert model.parts.num_layers == L and model.parts.tied
    assert model.tap.candidate_layers == list(range(1, L)), "tied: SLED's default skips layer 0"


def test_parity_with_plain_generate_when_every_feature_is_off(real):
    model, ids, mask = real
    expected = model.base.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW)
    assert torch.equal(model.generate(ids, mask, max_new_tokens=NEW), expected)
    # top_k named on both sides: transformers' own default is 50, ours is no top-k filter
    kwargs = dict(do_sample=True, temperature=0.8, top_k=40, top_p=0.9, max_new_tokens=NEW)
    torch.manual_seed(11)
    sampled = model.base.generate(ids, attention_mask=mask, **kwargs)
    assert torch.equal(model.generate(ids, mask, seed=11, **kwargs), sampled)


def test_tap_at_layer_L_is_the_models_logits(real):
    model, ids, mask = real
    tap = EarlyExitTap(model.base, layers=[0, 15, L])
    with torch.no_grad(), tap.capture(last_only=False):
        out = model.base(ids, attention_mask=mask, output_hidden_states=True)
        early = tap.early_logits()
    torch.testing.assert_close(early[:, :, 2], out.logits, atol=1e-4, rtol=1e-4)
    expected = model.base.lm_head(out.hidden_states[15])
    torch.testing.assert_close(early[:, :, 1], expected, atol=1e-4, rtol=1e-4)
    assert (early[:, -1, 1].argmax(-1) != out.logits[:, -1].argmax(-1)).any()


def test_sled_equals_the_step_by_step_reference(real):
    model, ids, mask = real
    layers = model.tap.candidate_layers
    sled = dict(evolution_rate=2.0, evolution_scale=10)

    def pick(final, hidden_states):
        return sled_evolve(final, early_logits(model.base, hidden_states, layers), **sled).argmax(-1)

    expected = reference_generate(model.base, ids, mask, NEW, pick)
    out = model.generate(ids, mask, sled={"enabled": True, **sled}, max_new_tokens=NEW)
    assert torch.equal(out, expected)
