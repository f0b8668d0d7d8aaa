"""toolkit.testing: tiny models are reproducible, loadable from disk and not degenerate."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from toolkit.core.errors import ConfigError
from toolkit.testing import TINY_FAMILIES, build_tiny_model, build_tokenizer, tiny_config

PROMPTS = ["The capital of France", "Two plus two", "A spider has", "If it rains"]


def test_tokenizer_special_ids_and_left_padding():
    tok = build_tokenizer()
    assert len(tok) == 300
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    enc = tok(["The capital of France", "hi"], padding=True)
    assert enc["input_ids"][1][0] == tok.pad_token_id
    assert enc["attention_mask"][1][0] == 0 and enc["attention_mask"][1][-1] == 1
    assert tok.decode(enc["input_ids"][0]) == "The capital of France"
    assert build_tokenizer()("sea shells")["input_ids"] == tok("sea shells")["input_ids"]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_config_sizes_and_token_ids(family):
    cfg = tiny_config(family)
    assert cfg.model_type == family
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers) == (300, 64, 4)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (4, 2)
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 1, 2)
    assert cfg.tie_word_embeddings == family.startswith("gemma")


def test_unknown_family_is_a_config_error():
    with pytest.raises(ConfigError, match="falcon.*llama"):
        tiny_config("falcon")


def test_seed_reproducible_and_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_tiny_model("llama", seed=0)
    assert torch.equal(torch.rand(1), before)
    b, c = build_tiny_model("llama", seed=0), build_tiny_model("llama", seed=1)
    w = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_saved_model_loads_back_and_greedy_replies_vary(family, tiny_model_dir):
    path = tiny_model_dir(family)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.padding_side == "left" and tok.pad_token_id == model.config.pad_token_id
    built = build_tiny_model(family).state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, built[key], rtol=0, atol=0, msg=key)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=16, do_sample=False, min_new_tokens=16)
    replies = out[:, enc["input_ids"].shape[1] :].tolist()
    assert len({tuple(r) for r in replies}) == len(PROMPTS)
    assert all(len(set(r)) >= 3 for r in replies), replies
