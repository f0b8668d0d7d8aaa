"""Recipe shorthands: a method mapping means enabled; `decoding.top_n_sigma: 1.0` is accepted."""

from __future__ import annotations

import dataclasses

import pytest

from toolkit.core.errors import ConfigError
from toolkit.methods.options import AdaptiveOptions, DecodingConfig, with_overrides
from toolkit.recipes import load_recipe

RECIPE = """\
model: {tiny: llama}
decoding:
  top_n_sigma: 1.5
  sled: {evolution_rate: 2.5}
  dola: {enabled: false, relative_top: 0.2}
  adaptive_temperature: {choice: sample}
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    return path


def test_mapping_means_enabled_and_flat_top_n_sigma(recipe):
    r = load_recipe(recipe)
    assert (r.decoding.top_n_sigma.enabled, r.decoding.top_n_sigma.n) == (True, 1.5)
    assert (r.decoding.sled.enabled, r.decoding.sled.evolution_rate) == (True, 2.5)
    assert (r.decoding.dola.enabled, r.decoding.dola.relative_top) == (False, 0.2)
    assert (r.decoding.adaptive_temperature.enabled, r.decoding.adaptive_temperature.choice) == (
        True, "sample")


def test_overrides_of_whole_sections_and_of_fields(recipe):
    r = load_recipe(recipe, ["decoding.top_n_sigma=0.5", "decoding.sled=false",
                             "decoding.dola.relative_top=0.3"])
    assert (r.decoding.top_n_sigma.enabled, r.decoding.top_n_sigma.n) == (True, 0.5)
    assert r.decoding.sled.enabled is False
    assert (r.decoding.dola.enabled, r.decoding.dola.relative_top) == (False, 0.3)
    r = load_recipe(recipe, ["decoding.dola={relative_top: 0.4}", "decoding.sled=null"])
    assert (r.decoding.dola.enabled, r.decoding.dola.relative_top) == (True, 0.4)
    assert r.decoding.sled.enabled is False
    r = load_recipe(recipe, ["decoding.top_n_sigma=null"])
    assert r.decoding.top_n_sigma.enabled is False


def test_bad_flat_value_names_the_key(recipe):
    with pytest.raises(ConfigError, match="decoding.top_n_sigma"):
        load_recipe(recipe, ["decoding.top_n_sigma=many"])


def test_an_unknown_method_option_names_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        with_overrides(DecodingConfig(), adaptive_temperature={"mode": "token"})
    valid = ", ".join(f.name for f in dataclasses.fields(AdaptiveOptions))
    assert str(err.value) == f"unknown adaptive_temperature option 'mode'; valid: {valid}"
