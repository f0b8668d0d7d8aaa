"""Locally typical sampling as a method: its options, registry entry and eval mode, and its
filter through generate (the filter's math: tests/decoding/test_typical.py)."""

from __future__ import annotations

import math

import pytest
import torch
from _generation import graft

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.methods.options import TypicalOptions, mode_decoding, with_overrides


def test_options_registry_and_modes():
    assert methods.get("typical").stage == "filter"
    assert with_overrides(None, typical=0.5).typical == TypicalOptions(enabled=True, mass=0.5)
    with pytest.raises(ConfigError, match="typical.mass"):
        TypicalOptions(mass=0.0)
    mode = mode_decoding(with_overrides(None, typical=0.3), "typical")
    assert mode.typical.enabled and mode.do_sample and mode.seed == 0


def test_sampled_tokens_stay_in_the_typical_set(tiny_llama_dir):
    am = graft(tiny_llama_dir)
    ids = am.tokenizer(["The quick brown fox"], return_tensors="pt")["input_ids"]
    out = am.generate(ids, typical=0.3, do_sample=True, temperature=1.0, top_k=0, seed=3,
                      max_new_tokens=6, return_dict_in_generate=True, output_scores=True,
                      return_records=True)
    scores = out.generate_output.scores
    for step, token in enumerate(out.sequences[0, ids.shape[1]:]):
        assert math.isfinite(scores[step][0, token].item())
        assert torch.isfinite(scores[step][0]).sum() < am.base.config.vocab_size
