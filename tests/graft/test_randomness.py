"""Randomness as transformers has it: generate() leaves torch's global stream alone unless the
call asks for a seed (the checkpoint's saved seed is not applied on every call), the caller's
own seeding is what a sampled call draws from, and `seed=[s1, s2, ...]` gives each prompt its
own stream: a sampled batch equals its prompts decoded one at a time with those seeds."""

from __future__ import annotations

import pytest
import torch
from _generation import graft, prompt_batch

from toolkit.core.errors import ConfigError
from toolkit.methods.options import with_overrides

NEW = 10


@pytest.fixture(scope="module")
def am(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    model.decoding = with_overrides(None, do_sample=True, top_k=0, top_n_sigma=2.0, seed=0,
                                    max_new_tokens=NEW)
    return model


@pytest.fixture(scope="module")
def batch(am):
    return prompt_batch(am.tokenizer)


def test_two_calls_draw_different_samples(am, batch):
    ids, mask = batch
    torch.manual_seed(1)
    first, second = am.generate(ids, mask), am.generate(ids, mask)
    assert not torch.equal(first, second), "the saved seed reseeded the global stream"


def test_the_callers_seeding_is_what_a_call_draws_from(am, batch):
    ids, mask = batch
    torch.manual_seed(7)
    a = am.generate(ids, mask)
    torch.manual_seed(7)
    assert torch.equal(am.generate(ids, mask), a)
    torch.manual_seed(8)
    assert not torch.equal(am.generate(ids, mask), a)
    assert torch.equal(am.generate(ids, mask, seed=7), am.generate(ids, mask, seed=7))


def test_a_greedy_call_leaves_the_global_stream_alone(am, batch):
    ids, mask = batch
    state = torch.get_rng_state()
    am.generate(ids, mask, do_sample=False)
    assert torch.equal(torch.get_rng_state(), state)


def test_one_seed_per_prompt_equals_each_prompt_alone(am, batch):
    ids, mask = batch
    seeds = [11, 12, 13]
    together = am.generate(ids, mask, seed=seeds, min_new_tokens=NEW)
    state = torch.get_rng_state()
    for row, seed in enumerate(seeds):
        alone = am.generate(ids[row][mask[row].bool()][None], seed=seed, min_new_tokens=NEW)
        assert together[row, -NEW:].tolist() == alone[0, -NEW:].tolist(), row
    torch.set_rng_state(state)
    other = am.generate(ids, mask, seed=[11, 12, 14], min_new_tokens=NEW)
    assert torch.equal(other[:2], together[:2]) and not torch.equal(other[2], together[2])


def test_a_seed_list_leaves_the_global_stream_as_it_was(am, batch):
    ids, mask = batch
    state = torch.get_rng_state()
    am.generate(ids, mask, seed=[1, 2, 3])
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(("seed", "extra", "message"), [
    ([1, 2], {}, "seed has 2 values for 3 prompts; give one seed per prompt"),
    ("one", {}, "seed='one' is not allowed; give an integer, or a list of one integer"),
    ([1, 2, 3.5], {}, r"seed=\[1, 2, 3.5\] is not allowed"),
    ([1, 2, 3], {"min_p": 0.1}, r"seed=\[...\] \(one per prompt\).*min_p"),
])
def test_bad_seeds_are_one_clear_error(am, batch, seed, extra, message):
    ids, mask = batch
    with pytest.raises(ConfigError, match=message):
        am.generate(ids, mask, seed=seed, **extra)


def test_a_saved_seed_must_be_an_integer():
    with pytest.raises(ConfigError, match=r"seed=\[1\] is not allowed; give an integer"):
        with_overrides(None, seed=[1])
