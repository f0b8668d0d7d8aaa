"""Generation settings follow transformers' rules: the base's generation_config gives the
defaults, a passed GenerationConfig or a keyword overrides them, the DecodingConfig's set fields
override the model's, and every sampling setting runs in our composition order. Parity with
`base.generate` under the same seed for each source, with every toolkit feature off."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.graft import hf_generate
from toolkit.graft.augmented import AugmentedModel
from toolkit.graft.processors import SledLogitsProcessor, TopNSigmaLogitsProcessor
from toolkit.methods.options import (
    DecodingConfig,
    GraftConfig,
    HeadConfig,
    SledOptions,
    TopNSigmaOptions,
    describe,
    mode_decoding,
    pinned,
    with_overrides,
)
from toolkit.testing import build_tiny_model, build_tokenizer

NEW = 10
# What Llama-3-Instruct ships in its generation_config.json (plus its eos/bos).
LLAMA3_INSTRUCT = dict(do_sample=True, temperature=0.6, top_p=0.9)
SETTINGS = dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, min_p=0.02,
                typical_p=0.95, repetition_penalty=1.3)


@pytest.fixture(scope="module")
def model():
    base = build_tiny_model("llama")
    base.generation_config.update(**LLAMA3_INSTRUCT)
    return AugmentedModel.graft(base, GraftConfig(head=HeadConfig(hidden_size=8)),
                                tokenizer=build_tokenizer())


def _ids() -> torch.Tensor:
    """Unpadded rows (our repetition penalty ignores left padding, transformers' does not)."""
    return torch.randint(3, 300, (3, 7), generator=torch.Generator().manual_seed(4))


def _both(model, seed=5, **kwargs):
    ids = _ids()
    torch.manual_seed(seed)
    expected = model.base.generate(ids, **kwargs)
    torch.manual_seed(seed)
    return model.generate(ids, **kwargs), expected


def test_the_models_generation_config_gives_the_defaults(model):
    got, expected = _both(model, max_new_tokens=NEW)
    assert torch.equal(got, expected)
    greedy = model.generate(_ids(), max_new_tokens=NEW, do_sample=False)
    assert not torch.equal(got, greedy), "the model's do_sample=True was not followed"


def test_a_passed_generation_config_overrides_them(model):
    config = GenerationConfig(max_new_tokens=NEW, **SETTINGS)
    got, expected = _both(model, generation_config=config)
    assert torch.equal(got, expected)
    assert not torch.equal(got, _both(model, max_new_tokens=NEW)[0])


def test_keywords_override_them(model):
    got, expected = _both(model, max_new_tokens=NEW, **SETTINGS)
    assert torch.equal(got, expected)
    cooler, expected = _both(model, max_new_tokens=NEW, temperature=0.3)
    assert torch.equal(cooler, expected) and not torch.equal(cooler, got)


def test_top_k_zero_means_off(model):
    got, expected = _both(model, max_new_tokens=NEW, top_k=0, top_p=1.0, temperature=2.0)
    assert torch.equal(got, expected)
    capped, _ = _both(model, max_new_tokens=NEW, top_k=2, top_p=1.0, temperature=2.0)
    assert not torch.equal(got, capped)
    with pytest.raises(ConfigError, match="top_k"):
        DecodingConfig(top_k=-1)


def test_precedence_keyword_passed_config_decoding_model_defaults():
    model_config = GenerationConfig(do_sample=True, temperature=0.6, top_p=0.9,
                                    repetition_penalty=1.1)
    passed = GenerationConfig(temperature=0.5, max_new_tokens=7)
    options = hf_generate.effective_options(DecodingConfig(temperature=0.9, top_p=0.5, top_k=3),
                                  {"top_k": 7}, {"generation_config": passed}, model_config)
    assert (options.do_sample, options.temperature, options.top_k, options.top_p,
            options.repetition_penalty, options.max_new_tokens) == (True, 0.5, 7, 0.5, 1.1, 7)
    bare = hf_generate.effective_options(DecodingConfig(), {}, {}, GenerationConfig())
    assert (bare.do_sample, bare.temperature, bare.top_k, bare.top_p,
            bare.repetition_penalty) == (False, 1.0, 50, 1.0, 1.0)
    own = GenerationConfig._get_default_generation_params()
    assert {k: own[k] for k in hf_generate.TRANSFORMERS_DEFAULTS} == hf_generate.TRANSFORMERS_DEFAULTS


def test_set_decoding_fields_override_the_model_and_pinned_ones_ignore_it(model):
    greedy = model.generate(_ids(), max_new_tokens=NEW, decoding=DecodingConfig(do_sample=False))
    plain_greedy = model.base.generate(_ids(), max_new_tokens=NEW, do_sample=False)
    assert torch.equal(greedy, plain_greedy)
    got, expected = _both(model, max_new_tokens=NEW, top_k=0, temperature=1.0, top_p=1.0)
    torch.manual_seed(5)
    pinned_run = model.generate(_ids(), max_new_tokens=NEW,
                                decoding=pinned(DecodingConfig(do_sample=True)))
    assert torch.equal(pinned_run, expected)


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_one_generation_config_and_no_config_keywords(model, monkeypatch):
    """No config field passed beside the GenerationConfig (transformers deprecates that), and
    no warning from transformers, greedy or sampled, on a model whose config samples."""
    seen = {}
    real = model.base.generate

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(model.base, "generate", spy)
    passed = GenerationConfig(max_new_tokens=3, top_p=0.8)
    handler = _Lines()
    logging.getLogger("transformers").addHandler(handler)
    try:
        for do_sample in (True, False):
            model.generate(_ids(), generation_config=passed, min_new_tokens=2, eos_token_id=9,
                           seed=0, do_sample=do_sample)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    fields = set(GenerationConfig().to_dict())
    assert isinstance(seen["generation_config"], GenerationConfig)
    assert not fields & (set(seen) - {"generation_config"})
    assert (seen["generation_config"].min_new_tokens, seen["generation_config"].eos_token_id,
            seen["generation_config"].do_sample) == (2, 9, False)
    assert not handler.lines, handler.lines


def test_methods_compose_with_the_models_settings_in_our_order(model):
    """SLED -> the model's temperature 0.6 -> top-n-sigma -> its top-k 50 (transformers'
    default) -> its top-p 0.9, all taken from the base's generation_config."""
    ids = _ids()
    torch.manual_seed(2)
    got = model.generate(ids, max_new_tokens=NEW, sled=True, top_n_sigma=1.5)
    processors = LogitsProcessorList([
        SledLogitsProcessor(model.tap, SledOptions(enabled=True)),
        TemperatureLogitsWarper(0.6), TopNSigmaLogitsProcessor(1.5), TopKLogitsWarper(50),
        TopPLogitsWarper(0.9)])
    torch.manual_seed(2)
    with torch.no_grad(), model.tap.capture(last_only=True):
        expected = model.base.generate(ids, max_new_tokens=NEW, logits_processor=processors,
                                       temperature=1.0, top_k=0, top_p=1.0)
    assert torch.equal(got, expected)
    torch.manual_seed(2)
    other = model.generate(ids, max_new_tokens=NEW, sled=True, top_n_sigma=1.5, temperature=1.0)
    assert not torch.equal(got, other), "the model's temperature changed nothing"


def test_beam_search_in_a_passed_config_still_refuses_tap_methods(model):
    with pytest.raises(ConfigError, match="num_beams=2 cannot compose with sled"):
        model.generate(_ids(), generation_config=GenerationConfig(num_beams=2), sled=True)


@pytest.mark.parametrize("n", [-1, 0])
def test_top_n_sigma_n_at_most_zero_is_off(model, n):
    """llama.cpp's `--top-n-sigma -1` is its "off": accepted, run and reported as off."""
    options = with_overrides(DecodingConfig(), top_n_sigma=n, do_sample=True)
    assert not options.top_n_sigma.enabled and options.top_n_sigma.n == n
    assert not methods.active(options) and describe(options) == "sampling"
    assert dataclasses.asdict(options)["top_n_sigma"] == {"enabled": False, "n": n}
    assert not TopNSigmaOptions(enabled=True, n=n).enabled
    got = model.generate(_ids(), max_new_tokens=NEW, top_n_sigma=n, seed=1)
    assert torch.equal(got, model.generate(_ids(), max_new_tokens=NEW, seed=1))
    mode = mode_decoding(options, "top_n_sigma")
    assert describe(mode) == "sampling" and not mode.top_n_sigma.enabled


def test_top_n_sigma_off_from_a_recipe(tmp_path):
    from toolkit.recipes.load import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("model:\n  tiny: llama\ndecoding:\n  top_n_sigma: -1\n")
    assert not load_recipe(path).decoding.top_n_sigma.enabled
    assert not load_recipe(path, ["decoding.top_n_sigma.enabled=true"]).decoding.top_n_sigma.enabled
