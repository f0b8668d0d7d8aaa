"""transformers generate() keywords pass through AugmentedModel.generate (parity with plain
generate when our features are off), conflicts raise, method dicts mean "enabled"."""

from __future__ import annotations

import logging

import pytest
import torch
from _generation import graft, prompt_batch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from toolkit.core.errors import ConfigError
from toolkit.graft import hf_generate
from toolkit.graft.processors import PromptAwareRepetitionPenalty

NEW = 8


@pytest.fixture(scope="module")
def setup(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    return model, *prompt_batch(model.tokenizer)


def _plain(model, ids, mask, seed=None, **kwargs):
    if seed is not None:
        torch.manual_seed(seed)
    return model.base.generate(ids, attention_mask=mask, **kwargs)


class _StopAfter(StoppingCriteria):
    def __init__(self, length: int):
        self.length = length

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.length)


# Greedy replies of the tiny llama to PROMPTS: [29, 35, 221, 24, ...], [125, 253, 127, 35, ...],
# [140, 225, 69, 225, 3, ...]; the keys below are chosen to change them.
GREEDY_KEYS = [
    dict(eos_token_id=221),
    dict(pad_token_id=1, eos_token_id=[221, 127]),
    dict(min_new_tokens=6, eos_token_id=[35, 2]),
    dict(no_repeat_ngram_size=1),
    dict(bad_words_ids=[[35], [253, 127]]),
    dict(num_beams=3),
    dict(max_length=30),
    dict(suppress_tokens=[29, 140]),
]


@pytest.mark.parametrize("kwargs", GREEDY_KEYS, ids=lambda k: ",".join(k))
def test_greedy_pass_through_parity(setup, kwargs):
    model, ids, mask = setup
    length = {} if "max_length" in kwargs else dict(max_new_tokens=NEW)
    expected = _plain(model, ids, mask, do_sample=False, **length, **kwargs)
    got = model.generate(ids, mask, **length, **kwargs)
    assert torch.equal(got, expected)
    plain = model.generate(ids, mask, max_new_tokens=NEW)
    if "num_beams" not in kwargs:
        assert not torch.equal(got, plain), f"{kwargs} changed nothing: the test tests nothing"


SAMPLED_KEYS = [
    dict(min_p=0.05),
    dict(typical_p=0.5),
    dict(num_return_sequences=3),
    dict(epsilon_cutoff=0.01),
]


@pytest.mark.parametrize("kwargs", SAMPLED_KEYS, ids=lambda k: ",".join(k))
def test_sampled_pass_through_parity(setup, kwargs):
    model, ids, mask = setup
    expected = _plain(model, ids, mask, seed=11, do_sample=True, max_new_tokens=NEW, **kwargs)
    got = model.generate(ids, mask, do_sample=True, seed=11, max_new_tokens=NEW, **kwargs)
    assert torch.equal(got, expected)
    assert got.shape[0] == ids.shape[0] * kwargs.get("num_return_sequences", 1)


def test_stop_strings_use_our_tokenizer(setup):
    model, ids, mask = setup
    free = model.generate(ids, mask, max_new_tokens=NEW)
    stop = model.tokenizer.decode(free[0, ids.shape[1] + 2: ids.shape[1] + 3])
    expected = _plain(model, ids, mask, do_sample=False, max_new_tokens=NEW, stop_strings=stop,
                      tokenizer=model.tokenizer)
    got = model.generate(ids, mask, max_new_tokens=NEW, stop_strings=stop)
    assert torch.equal(got, expected)


def test_stopping_criteria_streamer_and_dict_output(setup):
    model, ids, mask = setup
    criteria = StoppingCriteriaList([_StopAfter(ids.shape[1] + 3)])
    kwargs = dict(return_dict_in_generate=True, output_scores=True, stopping_criteria=criteria)
    expected = _plain(model, ids, mask, do_sample=False, max_new_tokens=NEW, **kwargs)
    got = model.generate(ids, mask, max_new_tokens=NEW, **kwargs)
    assert torch.equal(got.sequences, expected.sequences)
    assert got.sequences.shape[1] == ids.shape[1] + 3
    assert all(torch.equal(a, b) for a, b in zip(got.scores, expected.scores, strict=True))
    records = model.generate(ids, mask, max_new_tokens=NEW, return_records=True,
                             sled={"evolution_scale": 5}, **kwargs)
    assert torch.equal(records.sequences, records.generate_output.sequences)
    assert records.sled_layer_weights.shape[1] == 3


def test_generation_config_is_used(setup):
    model, ids, mask = setup
    config = GenerationConfig(max_new_tokens=5, min_new_tokens=4, eos_token_id=50)
    expected = _plain(model, ids, mask, do_sample=False, generation_config=config)
    got = model.generate(ids, mask, generation_config=config)
    assert torch.equal(got, expected)
    assert got.shape[1] == ids.shape[1] + 5


@pytest.mark.parametrize("method", [dict(sled=True), dict(dola=True),
                                    dict(adaptive_temperature=True)])
def test_beam_search_refuses_tap_methods(setup, method):
    model, ids, mask = setup
    with pytest.raises(ConfigError, match="num_beams=2 cannot compose with"):
        model.generate(ids, mask, num_beams=2, **method)


def test_unknown_keys_and_hub_dola_are_refused(setup):
    model, ids, mask = setup
    with pytest.raises(ConfigError, match="unknown generate option 'max_new_token'"):
        model.generate(ids, mask, max_new_token=3)
    with pytest.raises(ConfigError, match="dola_layers.*dola=True"):
        model.generate(ids, mask, dola_layers="high")


def test_method_dict_means_enabled(setup):
    model, ids, mask = setup
    options = dict(evolution_rate=2.0, evolution_scale=50)
    on = model.generate(ids, mask, sled=options, max_new_tokens=NEW)
    assert torch.equal(on, model.generate(ids, mask, sled={"enabled": True, **options},
                                          max_new_tokens=NEW))
    greedy = model.generate(ids, mask, max_new_tokens=NEW)
    assert not torch.equal(on, greedy)
    off = model.generate(ids, mask, sled={"enabled": False, **options}, max_new_tokens=NEW)
    assert torch.equal(off, greedy)
    dola = model.generate(ids, mask, dola={"relative_top": 0.2}, max_new_tokens=NEW,
                          return_records=True)
    assert dola.dola_layer is not None
    adaptive = model.generate(ids, mask, adaptive_temperature={"choice": "sample"},
                              do_sample=True, seed=0, max_new_tokens=NEW, return_records=True)
    assert adaptive.temperature_index is not None


def test_top_n_sigma_with_top_p_or_min_p_warns_once(setup, caplog):
    model, ids, mask = setup
    hf_generate._warn_truncation.cache_clear()
    with caplog.at_level(logging.WARNING, logger="toolkit.graft.hf_generate"):
        for _ in range(3):
            model.generate(ids, mask, top_n_sigma=1.0, top_p=0.9, do_sample=True, seed=0,
                           max_new_tokens=2)
        model.generate(ids, mask, top_n_sigma=1.0, do_sample=True, seed=0, max_new_tokens=2)
    warned = [r for r in caplog.records if "top-n-sigma is combined with top_p" in r.message]
    assert len(warned) == 1
    with caplog.at_level(logging.WARNING, logger="toolkit.graft.hf_generate"):
        model.generate(ids, mask, top_n_sigma=1.0, min_p=0.1, do_sample=True, seed=0,
                       max_new_tokens=2)
    assert any("combined with min_p" in r.message for r in caplog.records)


def test_repetition_penalty_padding_follows_repeated_rows():
    scores = torch.tensor([[1.0, 2.0, -1.0, 0.5], [1.0, 2.0, -1.0, 0.5]])
    ids = torch.tensor([[0, 1, 2], [3, 1, 3]])
    expanded = PromptAwareRepetitionPenalty(2.0, prompt_ignore_length=torch.tensor([1]))
    got = expanded(ids, scores.clone())
    # row 0 ignores its first token (0): tokens 1 and 2 are penalised; row 1 ignores token 3
    # at position 0, but token 3 at position 2 counts, and token 1.
    assert got.tolist() == [[1.0, 1.0, -2.0, 0.5], [1.0, 1.0, -1.0, 0.25]]
