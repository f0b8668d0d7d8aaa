"""The invariants of the tiny-model tests, on the real pretrained models: SmolLM2-135M-Instruct
(Llama, 30 layers) and Gemma 3 270M (gemma3_text, 18 layers, early layers normed by default),
both with tied embeddings: parity with plain generate() when every feature is off, the tap at
layer L equals the model's logits, SLED equals the cache-free step-by-step reference, and a
factual prompt is answered."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from _generation import early_logits, prompt_batch, reference_generate
from transformers import AutoModelForCausalLM, AutoTokenizer

from toolkit.decoding import sled_evolve
from toolkit.graft import AugmentedModel
from toolkit.graft.tap import EarlyExitTap
from toolkit.methods.options import GraftConfig, HeadConfig

pytestmark = pytest.mark.real

NEW = 8


class Real(NamedTuple):
    preset: str
    layers: int
    early_exit_norm: bool  # the model type's default (docs/methods.md section 1)
    factual: str  # a prompt whose greedy reply starts with " Paris"


MODELS = [
    Real("smollm2-135m-instruct", 30, False, "The capital of France is"),
    Real("gemma3-270m", 18, True, "Question: What is the capital of France?\nAnswer:"),
]


@pytest.fixture(scope="module", params=MODELS, ids=[m.preset for m in MODELS])
def real(request, real_preset_dir):
    spec: Real = request.param
    path = real_preset_dir(spec.preset)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AugmentedModel.graft(base, GraftConfig(head=HeadConfig(hidden_size=16)),
                                 tokenizer=tokenizer)
    prompts = [spec.factual, "Once upon a time, a small robot named Bo", "Two plus two is"]
    return spec, model, *prompt_batch(tokenizer, prompts)


def test_the_dequantized_model_knows_paris(real):
    spec, model, ids, mask = real
    out = model.generate(ids, mask, max_new_tokens=3)
    assert model.tokenizer.decode(out[0, ids.shape[1]:]).startswith(" Paris")
    assert model.parts.num_layers == spec.layers and model.parts.tied
    assert model.tap.candidate_layers == list(range(1, spec.layers)), "tied: no layer 0"
    assert model.tap.early_exit_norm is spec.early_exit_norm
    assert model.graft_config.early_exit_norm is spec.early_exit_norm, "recorded for saving"


def test_parity_with_plain_generate_when_every_feature_is_off(real):
    _, model, ids, mask = real
    expected = model.base.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW)
    assert torch.equal(model.generate(ids, mask, max_new_tokens=NEW), expected)
    # top_k named on both sides: transformers' own default is 50, ours is no top-k filter
    kwargs = dict(do_sample=True, temperature=0.8, top_k=40, top_p=0.9, max_new_tokens=NEW)
    torch.manual_seed(11)
    sampled = model.base.generate(ids, attention_mask=mask, **kwargs)
    assert torch.equal(model.generate(ids, mask, seed=11, **kwargs), sampled)


def test_tap_at_layer_L_is_the_models_logits(real):
    spec, model, ids, mask = real
    L, mid = spec.layers, spec.layers // 2
    tap = EarlyExitTap(model.base, layers=[0, mid, L])
    assert tap.early_exit_norm is spec.early_exit_norm, "the model type's default"
    with torch.no_grad(), tap.capture(last_only=False):
        out = model.base(ids, attention_mask=mask, output_hidden_states=True)
        early = tap.early_logits()
        hidden = out.hidden_states[mid]
        expected = model.base.lm_head(model.parts.norm(hidden) if spec.early_exit_norm else hidden)
    torch.testing.assert_close(early[:, :, 2], out.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(early[:, :, 1], expected, atol=1e-4, rtol=1e-4)
    assert (early[:, -1, 1].argmax(-1) != out.logits[:, -1].argmax(-1)).any()


def test_sled_equals_the_step_by_step_reference(real):
    spec, model, ids, mask = real
    layers = model.tap.candidate_layers
    norm = model.parts.norm if spec.early_exit_norm else None
    sled = dict(evolution_rate=2.0, evolution_scale=10)

    def pick(final, hidden_states):
        early = early_logits(model.base, hidden_states, layers, norm)
        return sled_evolve(final, early, **sled).argmax(-1)

    expected = reference_generate(model.base, ids, mask, NEW, pick)
    out = model.generate(ids, mask, sled={"enabled": True, **sled}, max_new_tokens=NEW)
    assert torch.equal(out, expected)
