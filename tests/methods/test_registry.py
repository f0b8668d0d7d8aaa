"""The method registry: one entry per name, unknown names named, and the typed surfaces that
list the built-ins (`DecodingConfig` fields) kept equal to it; every method's records read the
same way from `AugmentedOutput`."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.graft.records import AugmentedOutput
from toolkit.methods import registry
from toolkit.methods.options import METHOD_FIELDS, DecodingConfig, with_overrides
from toolkit.methods.top_n_sigma import TopNSigmaOptions


def _method(name: str, **kw) -> methods.DecodingMethod:
    return methods.DecodingMethod(**{"name": name, "options": TopNSigmaOptions, "stage": "filter",
                                     "label": str, "logits": lambda s, o: s, **kw})


def test_decoding_config_fields_are_the_built_in_registrations():
    hints = typing.get_type_hints(DecodingConfig)
    built_in = [m for m in methods.all_methods() if m.name in METHOD_FIELDS]
    assert [m.name for m in built_in] == list(METHOD_FIELDS)
    assert [f.name for f in dataclasses.fields(DecodingConfig)][:len(METHOD_FIELDS)] == list(
        METHOD_FIELDS)
    for method in built_in:
        assert hints[method.name] is method.options
        assert DecodingConfig().method(method.name) == method.options()
    plain = [f.name for f in dataclasses.fields(DecodingConfig) if f.name not in METHOD_FIELDS]
    assert tuple(plain) == registry.RESERVED


def test_every_record_field_reads_as_an_attribute_and_from_records(restored):
    methods.register(_method("toy_filter", record_field="toy_shift"))
    out = AugmentedOutput(sequences=torch.zeros(1, 2), reply_mask=torch.ones(1, 1))
    out.records["toy_shift"] = torch.ones(1, 1)
    out.records["dola_layer"] = torch.zeros(1, 1)
    assert out.toy_shift is out.records["toy_shift"] is out.record("toy_shift")
    assert out.dola_layer is out.records["dola_layer"]
    assert out.sled_layer_weights is None and out.temperature_index is None
    with pytest.raises(AttributeError, match="no attribute 'toy_shiff'"):
        out.toy_shiff  # noqa: B018


@pytest.mark.parametrize("name", ["sled", "greedy", "composed", "temperature", "plugins", "seed"])
def test_a_taken_name_is_refused(restored, name):
    with pytest.raises(ValueError, match="already taken"):
        methods.register(_method(name))


def test_a_taken_mode_and_bad_entries_are_refused(restored):
    with pytest.raises(ValueError, match="already taken"):
        methods.register(_method("adaptive_again", mode="adaptive"))
    with pytest.raises(ValueError, match="identifier"):
        _method("two words")
    with pytest.raises(ValueError, match="dataclass with a bool field `enabled`"):
        methods.DecodingMethod(name="x", options=dict, stage="filter", label=str)
    with pytest.raises(ValueError, match="stage must be one of"):
        _method("x", stage="late")
    with pytest.raises(ValueError, match="takes a DecodingMethod"):
        methods.register("x")


def test_unknown_names_are_named_with_the_registered_ones():
    with pytest.raises(ConfigError, match=r"unknown decoding method 'beam'; registered: sled, "):
        methods.get("beam")
    with pytest.raises(ConfigError, match="unknown decoding option 'beam'; valid options: sled"):
        with_overrides(None, beam=True)
    with pytest.raises(ConfigError, match="unknown decoding method 'beam'"):
        DecodingConfig(plugins={"beam": {}})
    with pytest.raises(ConfigError, match="built-in method; set decoding.sled"):
        DecodingConfig(plugins={"sled": {}})


def test_a_method_registered_after_import_works_at_once(restored):
    method = methods.register(_method("late_filter", shorthand="n"))
    config = DecodingConfig()
    assert config.method("late_filter") == TopNSigmaOptions()
    on = with_overrides(config, late_filter=2.0)
    assert on.plugins == {"late_filter": TopNSigmaOptions(enabled=True, n=2.0)}
    assert methods.active(on) == [method] and on.method("late_filter").n == 2.0
    assert DecodingConfig(plugins={"late_filter": {"n": 3.0}}).method("late_filter").n == 3.0
    assert "late_filter" in methods.generation_modes()
    assert "late_filter" not in methods.scoring_modes()


def test_a_plugin_may_share_a_name_with_a_config_method(restored):
    """A plugin named like a DecodingConfig attribute that is not a field (`method`) reads its
    own options, not the attribute."""
    plugin = methods.register(_method("method"))
    assert DecodingConfig().method("method") == TopNSigmaOptions()
    assert methods.active(with_overrides(None, method=True)) == [plugin]


def test_every_method_is_in_the_help_and_the_docs():
    from pathlib import Path

    from toolkit.cli.main import build_parser

    docs = (Path(__file__).resolve().parents[2] / "docs" / "methods.md").read_text(encoding="utf-8")
    parser = build_parser()
    top = parser.format_help()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    eval_help = " ".join(subparsers.choices["eval"].format_help().split())
    for method in methods.all_methods():
        assert method.name in top.split("decoding methods")[1], method.name
        assert f"`decoding.{method.name}`" in docs, method.name
    for mode in methods.scoring_modes() + methods.generation_modes():
        assert mode in eval_help
