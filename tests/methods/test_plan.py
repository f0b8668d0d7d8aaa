"""The decoding plan: one description of a call's steps, in the documented order, without torch;
the registry refuses a second logits-stage method whatever `exclusive_with` says; one tap per
call."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from _generation import graft

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.graft.composition import compose
from toolkit.methods.options import DecodingConfig, with_overrides
from toolkit.methods.plan import plan
from toolkit.methods.sled import SledOptions

EVERYTHING = dict(sled={"layers": [1, 2]}, top_n_sigma=1.5, typical=0.8,
                  adaptive_temperature={"choice": "sample"}, do_sample=True, temperature=0.7,
                  top_k=5, top_p=0.9, repetition_penalty=1.2)


def test_every_step_in_order():
    options = with_overrides(None, **EVERYTHING)
    steps = plan(options)
    assert steps.logits.method.name == "sled" and steps.logits.layers == [1, 2]
    assert steps.logits.options == options.sled
    assert steps.repetition_penalty == 1.2
    assert steps.temperature.value is None
    assert steps.temperature.head.method.name == "adaptive_temperature"
    assert steps.temperature.head.options.choice == "sample"
    assert [(s.method.name, s.options) for s in steps.filters] == [
        ("top_n_sigma", options.top_n_sigma), ("typical", options.typical)]
    assert (steps.top_k, steps.top_p, steps.do_sample) == (5, 0.9, True)


def test_greedy_keeps_the_logits_penalty_and_head_only():
    steps = plan(with_overrides(None, **{**EVERYTHING, "do_sample": False}))
    assert steps.logits.method.name == "sled" and steps.repetition_penalty == 1.2
    assert steps.temperature.head is not None
    assert (steps.filters, steps.top_k, steps.top_p, steps.do_sample) == ((), None, None, False)
    fixed = plan(with_overrides(None, do_sample=False, temperature=0.5))
    assert fixed.temperature is None and fixed.logits is None


def test_a_temperature_method_replaces_the_fixed_temperature_when_sampling():
    """EDT (a "temperature"-stage method with its own function) sets the temperature instead
    of the fixed one, and only when sampling; the head is refused beside it."""
    steps = plan(with_overrides(None, edt={"t0": 0.8}, do_sample=True, temperature=0.5, p_less=True))
    assert steps.temperature.method.method.name == "edt" and steps.temperature.value is None
    assert steps.temperature.method.options.t0 == 0.8 and steps.temperature.head is None
    assert [s.method.name for s in steps.filters] == ["p_less"]
    assert plan(with_overrides(None, edt=True, do_sample=False)).temperature is None
    with pytest.raises(ConfigError, match="enable at most one"):
        with_overrides(None, edt=True, adaptive_temperature=True)


@pytest.mark.parametrize("settings, expected", [
    (dict(do_sample=True, temperature=0.0), (0.0, None, None, None)),
    (dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0),
     (None, None, None, None)),
    (dict(do_sample=True), (None, None, None, None)),  # unset is off
    (dict(do_sample=True, temperature=2.0, top_k=3), (2.0, 3, None, None)),
])
def test_neutral_and_unset_settings_are_no_step(settings, expected):
    steps = plan(DecodingConfig(**settings))
    value = None if steps.temperature is None else steps.temperature.value
    assert (value, steps.top_k, steps.top_p, steps.repetition_penalty) == expected
    assert steps.logits is None and steps.filters == ()


def test_layers_of_reads_a_methods_own_layers():
    sled, typical = methods.get("sled"), methods.get("typical")
    assert sled.layers_of(SledOptions(layers="high")) == "high"
    assert sled.layers_of(SledOptions()) is None
    assert typical.layers_of(typical.options()) is None


def test_two_logits_methods_are_refused_whatever_exclusive_with_says(restored):
    for name in ("mix_a", "mix_b"):
        methods.register(methods.DecodingMethod(
            name=name, options=SledOptions, stage="logits", label=str,
            logits=lambda s, e, o, layers: (s, None), tap="layers", layers_key="layers"))
    with pytest.raises(ConfigError, match=r"^mix_a.enabled and mix_b.enabled are both true; "
                                          r"both rewrite the raw logits .*enable at most one$"):
        with_overrides(None, mix_a=True, mix_b=True)
    for pair in ({"sled": True, "dola": True}, {"contrastive": True, "mix_a": True}):
        with pytest.raises(ConfigError, match="enable at most one"):
            with_overrides(None, **pair)


def test_a_config_changed_after_it_was_built_is_refused_too():
    options = with_overrides(None, sled=True)
    options.dola.enabled = True  # no __post_init__ runs
    with pytest.raises(ConfigError, match="sled.enabled and dola.enabled"):
        plan(options)


def test_the_plan_needs_neither_torch_nor_transformers():
    code = ("import sys; from toolkit.methods.plan import plan; "
            "from toolkit.methods.options import DecodingConfig; plan(DecodingConfig()); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_one_tap_per_call(tiny_llama_dir):
    am = graft(tiny_llama_dir)
    made = []

    def tap_for(layers, final_only=False):
        made.append((layers, final_only))
        return am.tap.for_layers(layers, final_only)

    options = with_overrides(None, **{**EVERYTHING, "repetition_penalty": 1.0})
    composed = compose(plan(options), tap_for, head=am.head)
    assert made == [([1, 2], False)]
    assert composed.adaptive.tap is composed.tap is composed.early_exit.tap
    assert composed.layers == [1, 2]
    head_only = compose(plan(dataclasses.replace(options, sled=SledOptions())), tap_for,
                        head=am.head)
    assert made[1:] == [(None, True)] and head_only.tap.candidate_layers == [am.parts.num_layers]
    with pytest.raises(ConfigError, match="adaptive_temperature needs the grafted head"):
        compose(plan(options), tap_for)
