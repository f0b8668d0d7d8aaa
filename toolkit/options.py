"""Typed options for grafting and decoding (dataclasses that OmegaConf can use as schemas).

Every dataclass validates itself in `__post_init__`, so a bad value fails as soon as a recipe is
turned into objects, naming the key and the allowed values, before any model loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from toolkit.errors import ConfigError, check_choice, check_range

LAYER_BUCKETS = ("all", "low", "high")
ADAPTIVE_MODES = ("off", "sequence", "token")
ADAPTIVE_CHOICES = ("argmax", "sample")
HEAD_LEVELS = ("sequence", "token")


def check_layers(key: str, layers: Any) -> None:
    """Candidate layers are 'all', 'low', 'high' or a non-empty list of distinct ints >= 0."""
    if layers is None or (isinstance(layers, str) and layers in LAYER_BUCKETS):
        return
    if isinstance(layers, str):
        check_choice(key, layers, LAYER_BUCKETS + ("a list of layer indices",))
    items = list(layers)
    if not items or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in items):
        raise ConfigError(
            f"{key}={items!r} is not allowed; give 'all', 'low', 'high' or a non-empty list "
            "of layer indices >= 0"
        )
    if len(set(items)) != len(items):
        raise ConfigError(f"{key}={items!r} repeats a layer; list each layer once")


@dataclass
class HeadConfig:
    """AdaptiveDecoder head (docs/methods.md section 5)."""

    hidden_size: int = 2048
    temperatures: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    level: str = "sequence"

    def __post_init__(self) -> None:
        check_range("head.hidden_size", self.hidden_size, low=1)
        check_choice("head.level", self.level, HEAD_LEVELS)
        if not self.temperatures:
            raise ConfigError("head.temperatures is empty; give at least one temperature")
        for t in self.temperatures:
            check_range("head.temperatures", t, low=0.0)


@dataclass
class GraftConfig:
    """What is grafted onto the base model: the early-exit tap and the head."""

    layers: Any = "all"
    early_exit_norm: bool = False
    head: HeadConfig = field(default_factory=HeadConfig)

    def __post_init__(self) -> None:
        check_layers("graft.layers", self.layers)


@dataclass
class SledOptions:
    """SLED (docs/methods.md section 2). `layers=None` uses the graft's candidate layers."""

    enabled: bool = False
    evolution_rate: float = 2.0
    evolution_scale: int = 10
    evolution_lower_bound: float = -1000.0
    op_T: int = 1
    layers: Any = None

    def __post_init__(self) -> None:
        check_range("sled.evolution_rate", self.evolution_rate, low=0.0, low_open=True)
        check_range("sled.evolution_scale", self.evolution_scale, low=1)
        check_range("sled.op_T", self.op_T, low=1)
        check_layers("sled.layers", self.layers)


@dataclass
class DolaOptions:
    """DoLa (docs/methods.md section 3). `layers=None` uses the graft's candidate layers."""

    enabled: bool = False
    relative_top: float = 0.1
    layers: Any = None

    def __post_init__(self) -> None:
        check_range("dola.relative_top", self.relative_top, low=0.0, high=1.0, low_open=True)
        check_layers("dola.layers", self.layers)


@dataclass
class TopNSigmaOptions:
    """Top-n-sigma (docs/methods.md section 4)."""

    enabled: bool = False
    n: float = 1.0


@dataclass
class AdaptiveOptions:
    """Adaptive temperature from the head: off, per reply (sequence) or per token."""

    mode: str = "off"
    choice: str = "argmax"

    def __post_init__(self) -> None:
        check_choice("adaptive_temperature.mode", self.mode, ADAPTIVE_MODES)
        check_choice("adaptive_temperature.choice", self.choice, ADAPTIVE_CHOICES)


@dataclass
class DecodingConfig:
    """One typed config for `AugmentedModel.generate`.

    Composition order: SLED or DoLa on raw logits -> repetition penalty -> temperature (fixed
    or adaptive) -> top-n-sigma -> top-k -> top-p -> sample (or argmax when do_sample is off).
    """

    sled: SledOptions = field(default_factory=SledOptions)
    dola: DolaOptions = field(default_factory=DolaOptions)
    top_n_sigma: TopNSigmaOptions = field(default_factory=TopNSigmaOptions)
    adaptive_temperature: AdaptiveOptions = field(default_factory=AdaptiveOptions)
    do_sample: bool = False
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 32
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        if self.sled.enabled and self.dola.enabled:
            raise ConfigError("sled.enabled and dola.enabled are both true; enable at most one")
        check_range("temperature", self.temperature, low=0.0)
        if self.top_k is not None:
            check_range("top_k", self.top_k, low=1)
        check_range("top_p", self.top_p, low=0.0, high=1.0, low_open=True)
        check_range("repetition_penalty", self.repetition_penalty, low=0.0, low_open=True)
        check_range("max_new_tokens", self.max_new_tokens, low=1)


_SHORTHAND = {
    "sled": (SledOptions, "enabled"),
    "dola": (DolaOptions, "enabled"),
    "top_n_sigma": (TopNSigmaOptions, "n"),
    "adaptive_temperature": (AdaptiveOptions, "mode"),
}


def with_overrides(config: Optional[DecodingConfig] = None, **overrides: Any) -> DecodingConfig:
    """A copy of `config` (default: DecodingConfig()) with keyword overrides applied.

    Flat keys (`do_sample`, `temperature`, ...) replace values. A method key takes its options
    object, a dict of its fields (enabled unless it holds `enabled: False`), or a shorthand:
    `sled=True`, `dola=True`,
    `top_n_sigma=1.5` (enables it with n=1.5; `None`/`False` disables it),
    `adaptive_temperature="token"`. Unknown keys raise ConfigError naming the valid ones.
    """
    config = config or DecodingConfig()
    valid = [f.name for f in dataclasses.fields(DecodingConfig)]
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in valid:
            raise ConfigError(f"unknown decoding option {key!r}; valid options: {', '.join(valid)}")
        if key in _SHORTHAND:
            value = _method_options(key, getattr(config, key), value)
        changes[key] = value
    return dataclasses.replace(config, **changes)


def method_dict(key: str, value: dict[str, Any], current: Any = None) -> dict[str, Any]:
    """A method's options given as a dict mean "enabled" unless the dict says `enabled: false`
    (`sled={"evolution_rate": 2.5}` turns SLED on). `adaptive_temperature` has a `mode` instead:
    a dict that leaves it "off" must name it."""
    if key != "adaptive_temperature":
        return {"enabled": True, **value}
    if "mode" not in value and getattr(current, "mode", "off") == "off":
        raise ConfigError(
            f"adaptive_temperature={dict(value)!r} names no mode; add mode: sequence or token"
        )
    return dict(value)


def _method_options(key: str, current: Any, value: Any) -> Any:
    cls, main_field = _SHORTHAND[key]
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return dataclasses.replace(current, **method_dict(key, value, current))
    if key == "top_n_sigma":
        if value is None or value is False:
            return dataclasses.replace(current, enabled=False)
        if value is True:
            return dataclasses.replace(current, enabled=True)
        return dataclasses.replace(current, enabled=True, n=float(value))
    if key == "adaptive_temperature":
        return dataclasses.replace(current, mode="off" if value in (None, False) else value)
    return dataclasses.replace(current, **{main_field: bool(value)})
