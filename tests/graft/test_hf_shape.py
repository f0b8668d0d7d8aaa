"""AugmentedModel shaped like the transformers model it wraps: `generate(inputs)` and
`generate(input_ids=...)`, `device`, `dtype`, `config`, `to()`, and
`pipeline("text-generation", model=am)` decoding through it."""

from __future__ import annotations

import pytest
import torch
from _generation import graft, prompt_batch
from transformers import pipeline

from toolkit.core.errors import ConfigError

NEW = 10
SLED = {"evolution_rate": 5.0, "evolution_scale": 20}  # strong enough to change tiny replies


@pytest.fixture(scope="module")
def am(tiny_llama_dir):
    return graft(tiny_llama_dir)


def test_prompt_ids_positionally_by_inputs_or_by_input_ids(am):
    ids, mask = prompt_batch(am.tokenizer)
    settings = dict(max_new_tokens=NEW, do_sample=False, sled=SLED)
    expected = am.generate(ids, mask, **settings)
    assert torch.equal(am.generate(inputs=ids, attention_mask=mask, **settings), expected)
    assert torch.equal(am.generate(input_ids=ids, attention_mask=mask, **settings), expected)
    with pytest.raises(ConfigError, match="given twice"):
        am.generate(ids, input_ids=ids)
    with pytest.raises(ConfigError, match=r"needs the prompt ids as a \(batch, tokens\) tensor"):
        am.generate(attention_mask=mask)


def test_device_dtype_config_and_to_are_the_bases(am):
    assert am.device == am.base.device == torch.device("cpu")
    assert am.dtype == am.base.dtype == torch.float32
    assert am.config is am.base.config and am.generation_config is am.base.generation_config
    assert am.to("cpu") is am and am.can_generate()


def test_text_generation_pipeline_decodes_through_the_model(am):
    prompt = "The quick brown fox jumps"
    expected = am.generate(**am.encode(prompt), max_new_tokens=NEW, do_sample=False, sled=SLED)
    pipe = pipeline("text-generation", model=am, tokenizer=am.tokenizer)
    out = pipe(prompt, max_new_tokens=NEW, do_sample=False, sled=SLED)
    assert out == [{"generated_text": am.tokenizer.decode(expected[0], skip_special_tokens=True)}]
    plain = am.generate(**am.encode(prompt), max_new_tokens=NEW, do_sample=False)
    assert not torch.equal(plain, expected), "sled changed nothing: the test cannot tell"
