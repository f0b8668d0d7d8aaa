"""Typed options for grafting and decoding (dataclasses that OmegaConf can use as schemas).

Every dataclass validates itself in `__post_init__`, so a bad value fails as soon as a recipe is
turned into objects, naming the key and the allowed values, before any model loads.

`DecodingConfig` has one field per built-in decoding method (`toolkit.methods`) holding that
method's options, a `plugins` mapping for methods registered by other packages, and the plain
knobs (sampling, temperature, top-k, ...). Eval and bench
derive their modes and task presets from it with `mode_decoding` and `apply_preset`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from toolkit import methods
from toolkit.core.errors import LAYER_BUCKETS, ConfigError, check_choice, check_layers, check_range
from toolkit.methods.adaptive import AdaptiveOptions
from toolkit.methods.contrastive import ContrastiveOptions
from toolkit.methods.delta import DeltaOptions
from toolkit.methods.dola import DolaOptions
from toolkit.methods.edt import EdtOptions
from toolkit.methods.p_less import PLessOptions
from toolkit.methods.registry import RESERVED
from toolkit.methods.sled import SledOptions
from toolkit.methods.top_n_sigma import TopNSigmaOptions
from toolkit.methods.typical import TypicalOptions

log = logging.getLogger(__name__)

HEAD_LEVELS = ("sequence", "token")
# How prompts meet a chat model (generate.chat_template, data.chat_template,
# eval.chat_template): "auto" = as the head was trained, else the template when the tokenizer
# has one; "on" = always the template; "off" = the text as written (`toolkit.graft.prompting`).
CHAT_TEMPLATES = ("auto", "on", "off")


def chat_template_setting(key: str, value: Any) -> str:
    """A chat_template setting: auto / on / off, where YAML's reading of on/off (true/false)
    and Python's True/False count as on/off; anything else is a ConfigError naming `key`."""
    if isinstance(value, bool) or value in ("True", "False", "true", "false"):
        value = "on" if value in (True, "True", "true") else "off"
    check_choice(key, value, CHAT_TEMPLATES)
    return value

__all__ = [
    "CHAT_TEMPLATES", "HEAD_LEVELS", "LAYER_BUCKETS", "METHOD_FIELDS", "AdaptiveOptions",
    "ContrastiveOptions", "DecodingConfig", "DeltaOptions", "DolaOptions", "EdtOptions",
    "GraftConfig", "HeadConfig", "NEUTRAL", "PLessOptions", "SledOptions", "TopNSigmaOptions",
    "TypicalOptions", "apply_preset", "check_layers",
    "describe", "mode_decoding", "pinned", "replacing_saved", "with_overrides",
]


@dataclass
class HeadConfig:
    """AdaptiveDecoder head: an MLP over the last hidden state choosing from `temperatures`.

    `level` is set here once: "sequence" (one temperature per reply, from the last prompt
    token) or "token" (a new temperature at every step). Collection, training and the
    adaptive-temperature decoding all follow it.
    """

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
    """What is grafted onto the base model: the early-exit tap and the head.

    `early_exit_norm`: None (default) takes the model type's measured default (true for Gemma 3,
    false otherwise; docs/methods.md section 1); true/false forces it.
    """

    layers: Any = "all"
    early_exit_norm: Optional[bool] = None
    head: HeadConfig = field(default_factory=HeadConfig)

    def __post_init__(self) -> None:
        check_layers("graft.layers", self.layers)


# transformers' sampling settings, with the value that switches each off. None in a
# DecodingConfig means "unset": generate() takes it from the model's generation_config, as
# transformers does (`toolkit.graft.hf_generate.effective_options`); top_k=0 is transformers' "no top-k".
NEUTRAL: dict[str, Any] = {"do_sample": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                           "repetition_penalty": 1.0}


def check_generation_settings(settings: Any) -> None:
    """Range checks of the NEUTRAL settings that are set (None: unset) on any object."""
    checks = {"temperature": dict(low=0.0), "top_k": dict(low=0),
              "top_p": dict(low=0.0, high=1.0, low_open=True),
              "repetition_penalty": dict(low=0.0, low_open=True)}
    for key, bounds in checks.items():
        if getattr(settings, key, None) is not None:
            check_range(key, getattr(settings, key), **bounds)


@dataclass
class DecodingConfig:
    """One typed config for `AugmentedModel.generate`.

    Method sections, each with `enabled`: one field per built-in method (a test keeps them
    equal to the built-in registrations), and `plugins`, the options of methods registered
    from other packages (name -> their options object; a dict is turned into one and checked;
    a plugin left out is off). Read any method's options with `method(name)`. The steps a
    config runs, in the composition order: `toolkit.methods.plan.plan(config)`.

    do_sample, temperature, top_k, top_p and repetition_penalty left at None are unset:
    generate() takes them from the base model's generation_config, as transformers does; set
    ones override it.
    """

    sled: SledOptions = field(default_factory=SledOptions)
    dola: DolaOptions = field(default_factory=DolaOptions)
    contrastive: ContrastiveOptions = field(default_factory=ContrastiveOptions)
    top_n_sigma: TopNSigmaOptions = field(default_factory=TopNSigmaOptions)
    typical: TypicalOptions = field(default_factory=TypicalOptions)
    adaptive_temperature: AdaptiveOptions = field(default_factory=AdaptiveOptions)
    p_less: PLessOptions = field(default_factory=PLessOptions)
    edt: EdtOptions = field(default_factory=EdtOptions)
    delta: DeltaOptions = field(default_factory=DeltaOptions)
    plugins: dict[str, Any] = field(default_factory=dict)
    do_sample: Optional[bool] = None
    temperature: Optional[float] = None
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    max_new_tokens: int = 32
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        self.plugins = {name: _plugin_options(name, value) for name, value in self.plugins.items()}
        methods.check_exclusive(self)
        check_generation_settings(self)
        check_range("max_new_tokens", self.max_new_tokens, low=1)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed={self.seed!r} is not allowed; give an integer (generate() "
                              "also takes a list of one integer per prompt)")

    def method(self, name: str) -> Any:
        """The options of the registered method `name` (built-in or plugin)."""
        return methods.options_of(self, methods.get(name).name)

    def with_methods(self, changes: dict[str, Any]) -> DecodingConfig:
        """A copy with the options of the named methods replaced (built-ins or plugins)."""
        builtin = {k: v for k, v in changes.items() if k in METHOD_FIELDS}
        plugins = {**self.plugins, **{k: v for k, v in changes.items() if k not in METHOD_FIELDS}}
        return dataclasses.replace(self, **builtin, plugins=plugins)


# The built-in methods' fields: every field the registry does not reserve for a plain setting.
METHOD_FIELDS = tuple(f.name for f in dataclasses.fields(DecodingConfig)
                      if f.name not in RESERVED)


def _plugin_options(name: str, value: Any) -> Any:
    method = methods.get(name)
    if method.name in METHOD_FIELDS:
        raise ConfigError(f"decoding.plugins.{name}: {name} is a built-in method; set "
                          f"decoding.{name} instead")
    if isinstance(value, method.options):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"decoding.{name} must be a mapping of {method.options.__name__} "
                          f"fields, not {value!r}")
    _check_fields(method, value)
    return method.options(**value)


def with_overrides(config: Optional[DecodingConfig] = None, **overrides: Any) -> DecodingConfig:
    """A copy of `config` with keyword overrides applied.

    Args:
        config: the starting point (default: `DecodingConfig()`).
        **overrides: flat keys (`do_sample`, `temperature`, ...) replace values. A method key
            takes its options object, a dict of its fields (enabled unless it holds
            `enabled: False`), or a shorthand: `True`/`False`/`None` switch it on or off; a
            number sets its shorthand field and switches it on (`top_n_sigma=1.5`).

    Returns:
        The new `DecodingConfig` (validated).

    Raises:
        ConfigError: an unknown key or option field, naming the valid ones.
    """
    config = config or DecodingConfig()
    method_names = [m.name for m in methods.all_methods()]
    valid = [*method_names, *(f.name for f in dataclasses.fields(DecodingConfig)
                              if f.name not in (*METHOD_FIELDS, "plugins"))]
    changes: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in valid:
            raise ConfigError(f"unknown decoding option {key!r}; valid options: {', '.join(valid)}")
        if key in method_names:
            chosen[key] = _method_options(methods.get(key), config.method(key), value)
        else:
            changes[key] = value
    return dataclasses.replace(config.with_methods(chosen), **changes)


def replacing_saved(saved: DecodingConfig, overrides: Mapping[str, Any],
                    source: str = "the saved decoding") -> dict[str, Any]:
    """`overrides` with the saved logits-stage method switched off when they switch another on.

    One call runs one logits-stage method (SLED, DoLa, contrastive decoding, DeLTa, a plugin's),
    so the one asked for replaces the one a checkpoint or recipe saved, as a keyword of
    transformers' `generate()` overrides the model's generation_config; one INFO line says so.
    `AugmentedModel.generate`, a checkpoint's custom_generate folder, the lm-eval backend
    (preset=checkpoint) and vLLM requests (`toolkit.serving.requests`) all apply it here.

    Args:
        saved: the decoding the call starts from.
        overrides: method name -> a value `with_overrides` takes (True / False / None, a dict
            of options, an options object or a shorthand number); other keys pass unchanged.
        source: who saved `saved`, for the INFO line (e.g. "the checkpoint's decoding").

    Returns:
        A new mapping: `overrides`, plus `name: False` for each logits-stage method `saved`
        enables and `overrides` does not name, when `overrides` switch a logits-stage method on.
    """
    names = {m.name for m in methods.all_methods()}
    asked = [name for name, value in overrides.items() if name in names
             and methods.get(name).stage == "logits"
             and _method_options(methods.get(name), saved.method(name), value).enabled]
    replaced = [m.name for m in methods.active(saved)
                if m.stage == "logits" and m.name not in overrides]
    if not asked or not replaced:
        return dict(overrides)
    log.info("%s replaces %s, the logits-stage method of %s (a call runs one)", asked[0],
             " and ".join(replaced), source)
    return {**overrides, **dict.fromkeys(replaced, False)}


def _method_options(method: methods.DecodingMethod, current: Any, value: Any) -> Any:
    if isinstance(value, method.options):
        return value
    if isinstance(value, dict):
        _check_fields(method, value)
        return dataclasses.replace(current, **{"enabled": True, **value})
    if value is None or isinstance(value, bool):
        return dataclasses.replace(current, enabled=bool(value))
    if method.shorthand and isinstance(value, (int, float)):
        return dataclasses.replace(current, enabled=True, **{method.shorthand: float(value)})
    raise ConfigError(
        f"{method.name}={value!r} is not allowed; give True/False, a dict of "
        f"{method.options.__name__} fields or a {method.options.__name__}"
    )


def _check_fields(method: methods.DecodingMethod, value: dict) -> None:
    """ConfigError naming the first key of `value` that is not a field of the method's options."""
    names = [f.name for f in dataclasses.fields(method.options)]
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ConfigError(f"unknown {method.name} option {unknown[0]!r}; valid: {', '.join(names)}")


def pinned(config: DecodingConfig) -> DecodingConfig:
    """`config` with every unset sampling setting switched off (NEUTRAL), so that it decodes the
    same whatever generation_config the model ships (eval/bench modes, LPO's measurements)."""
    return dataclasses.replace(config, **{k: v for k, v in NEUTRAL.items()
                                          if getattr(config, k) is None})


def mode_decoding(base: DecodingConfig, mode: str) -> DecodingConfig:
    """The decoding config of one eval/bench mode, derived from `base`.

    Args:
        base: the recipe's decoding options (method settings, max_new_tokens, seed, ...).
        mode: "greedy" (every method off, no sampling), a method's mode name (that method
            alone), or "composed" (SLED + top-n-sigma + adaptive temperature, sampling).

    Returns:
        `base` with every method switched off but the mode's own; modes whose methods sample
        get do_sample=True and a fixed seed (base.seed, else 0). Sampling settings the recipe
        leaves unset are off (`pinned`), not the model's generation_config: a mode measures
        its method, whatever defaults the model ships.
    """
    off = {m.name: dataclasses.replace(base.method(m.name), enabled=False)
           for m in methods.all_methods()}
    plain = pinned(base.with_methods(off))
    if mode == methods.GREEDY:
        return dataclasses.replace(plain, do_sample=False)
    names = methods.COMPOSED_METHODS if mode == methods.COMPOSED else (methods.get(mode).name,)
    on = {n: dataclasses.replace(base.method(n), enabled=True) for n in names}
    changes: dict[str, Any] = {}
    if any(methods.get(n).samples for n in names):
        changes.update(do_sample=True, seed=0 if base.seed is None else base.seed)
    return dataclasses.replace(plain.with_methods(on), **changes)


def apply_preset(base: DecodingConfig, preset: str) -> DecodingConfig:
    """`base` with every method's values for the named preset (methods without it unchanged)."""
    changes = {m.name: dataclasses.replace(base.method(m.name), **m.presets[preset])
               for m in methods.all_methods() if preset in m.presets}
    return base.with_methods(changes)


def describe(decoding: DecodingConfig) -> str:
    """One line naming the enabled methods and greedy/sampling, e.g. 'SLED alpha=2 K=10 +
    sampling'."""
    parts = [m.label(decoding.method(m.name)) for m in methods.active(decoding)]
    sampling = {True: "sampling", False: "greedy", None: "the model's generation_config"}
    parts.append(sampling[decoding.do_sample])
    return " + ".join(parts)
