"""The one rule for methods saved and methods asked for (`replacing_saved`): a logits-stage
method switched on in a call replaces the saved logits-stage method, with one INFO line, and
nothing else changes."""

from __future__ import annotations

import logging

import pytest

from toolkit.core.errors import ConfigError
from toolkit.methods.options import DecodingConfig, replacing_saved, with_overrides

SLED_SAVED = with_overrides(None, sled=True, top_n_sigma=1.0, do_sample=True)


@pytest.mark.parametrize("asked", [True, {"relative_top": 0.2}])
def test_a_logits_method_asked_for_switches_the_saved_one_off(asked, caplog):
    caplog.set_level(logging.INFO, logger="toolkit.methods.options")
    result = replacing_saved(SLED_SAVED, {"dola": asked, "temperature": 0.5}, "the checkpoint")
    assert result == {"dola": asked, "temperature": 0.5, "sled": False}
    assert [r.getMessage() for r in caplog.records] == [
        "dola replaces sled, the logits-stage method of the checkpoint (a call runs one)"]
    options = with_overrides(SLED_SAVED, **result)
    assert options.dola.enabled and not options.sled.enabled and options.top_n_sigma.enabled


@pytest.mark.parametrize("asked", [
    {"top_n_sigma": 2.0},          # a filter: no logits-stage method asked for
    {"dola": False},               # switched off, not on
    {"sled": {"evolution_scale": 3}},  # the saved method itself, retuned
    {"temperature": 0.7},
    {},
])
def test_nothing_else_is_replaced(asked, caplog):
    caplog.set_level(logging.INFO)
    assert replacing_saved(SLED_SAVED, asked) == asked
    assert not caplog.records


def test_no_saved_logits_method_means_no_change():
    assert replacing_saved(DecodingConfig(), {"dola": True}) == {"dola": True}


def test_two_asked_for_still_clash():
    asked = replacing_saved(SLED_SAVED, {"dola": True, "contrastive": True})
    with pytest.raises(ConfigError, match="contrastive|dola"):
        with_overrides(SLED_SAVED, **asked)


def test_the_caller_mapping_is_not_changed():
    asked = {"dola": True}
    replacing_saved(SLED_SAVED, asked)
    assert asked == {"dola": True}
