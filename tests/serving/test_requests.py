"""Per-request options (vllm_xargs) into decoding options and stages; no vLLM needed."""

from __future__ import annotations

import pytest

from toolkit.core.errors import ConfigError
from toolkit.methods.options import DecodingConfig, SledOptions, TopNSigmaOptions
from toolkit.serving import state
from toolkit.serving.plan import request_plan
from toolkit.serving.requests import request_decoding, valid_keys

SLED_SAVED = DecodingConfig(sled=SledOptions(enabled=True, evolution_rate=5.0),
                            top_n_sigma=TopNSigmaOptions(enabled=True, n=1.5))


def _served(decoding=SLED_SAVED, layers=(1, 2, 3), vocab=300) -> state.Served:
    from toolkit.methods.options import GraftConfig

    return state.Served(directory=None, base_path="", graft=GraftConfig(), decoding=decoding,
                        vocab_size=vocab, num_layers=4, tied=False, layers=tuple(layers))


def test_no_extra_args_keeps_the_saved_decoding():
    assert request_decoding(SLED_SAVED, None) is SLED_SAVED
    assert request_decoding(SLED_SAVED, {"other_processor_arg": 3}) is SLED_SAVED


def test_flags_fields_and_shorthands_as_lm_eval_names_them():
    out = request_decoding(SLED_SAVED, {"sled_evolution_scale": "20", "top_n_sigma": 0.5,
                                        "sled_score_log_softmax": "false"})
    assert out.sled.enabled and out.sled.evolution_scale == 20 and out.sled.evolution_rate == 5.0
    assert out.sled.score_log_softmax is False
    assert out.top_n_sigma.enabled and out.top_n_sigma.n == 0.5
    off = request_decoding(SLED_SAVED, {"sled": "false", "top_n_sigma": 0})
    assert not off.sled.enabled and not off.top_n_sigma.enabled


def test_json_booleans_arrive_as_integers():
    """vLLM turns a JSON true into 1: it switches a method without a shorthand on."""
    out = request_decoding(DecodingConfig(), {"dola": 1, "typical": 0.5})
    assert out.dola.enabled and out.typical.enabled and out.typical.mass == 0.5
    assert not request_decoding(SLED_SAVED, {"sled": 0}).sled.enabled


def test_switching_on_a_logits_method_replaces_the_saved_one():
    out = request_decoding(SLED_SAVED, {"dola": True})
    assert out.dola.enabled and not out.sled.enabled and out.top_n_sigma.enabled
    with pytest.raises(ConfigError, match="both true"):
        request_decoding(SLED_SAVED, {"dola": True, "sled": True})


@pytest.mark.parametrize("extra, message", [
    ({"sledd": True}, "did you mean 'sled'"),
    ({"sled_evolution_scael": 3}, "unknown vllm_xargs key 'sled_evolution_scael'"),
    ({"sled_evolution_rate": "fast"}, "not a number"),
    ({"sled_evolution_scale": 2.5}, "not a valid int"),
    ({"sled_evolution_rate": -1}, "sled.evolution_rate"),
    ({"dola": "maybe"}, "give true or false"),
    ({"temperature": 0.5}, "request's own `temperature` field"),
    ({"max_new_tokens": 5}, "`max_tokens` field"),
])
def test_bad_keys_and_values_are_one_line_errors(extra, message):
    with pytest.raises(ConfigError, match=message) as caught:
        request_decoding(SLED_SAVED, extra)
    assert "\n" not in str(caught.value)


def test_every_registered_method_and_option_has_a_key():
    from toolkit import methods

    keys = valid_keys()
    for method in methods.all_methods():
        assert method.name in keys
    assert "sled_evolution_rate" in keys and "dola_relative_top" in keys


def test_plan_stages_follow_the_composition_order():
    saved = DecodingConfig(sled=SledOptions(enabled=True),
                           top_n_sigma=TopNSigmaOptions(enabled=True))
    plan = request_plan({"typical": 0.9, "adaptive_temperature": True}, _served(saved))
    assert plan.logits.method.name == "sled" and plan.logits.layers == (1, 2, 3)
    assert plan.adaptive is not None and plan.adaptive.choice == "argmax"
    assert [s.method.name for s in plan.filters] == ["top_n_sigma", "typical"]
    assert request_plan({"sled_layers": [3, 1]}, _served(saved)).logits.layers == (3, 1)


def test_plan_refuses_what_the_served_model_cannot_run():
    with pytest.raises(ConfigError, match="sled needs the early-exit tap"):
        request_plan({"sled": True}, None)
    with pytest.raises(ConfigError, match="adaptive_temperature needs the adaptive head"):
        request_plan({"adaptive_temperature": True}, None)
    assert request_plan({"top_n_sigma": 1.0}, None).filters[0].options.n == 1.0
    with pytest.raises(ConfigError, match="larger than the vocabulary"):
        request_plan({"sled": True, "sled_evolution_scale": 1000}, _served())
    with pytest.raises(ConfigError, match=r"layer\(s\) \[4\].*does not capture"):
        request_plan({"dola": True, "dola_layers": [2, 4]}, _served())
