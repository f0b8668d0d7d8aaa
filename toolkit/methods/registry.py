"""The registry of decoding methods: one entry per method, read by every part that lists them.

A `DecodingMethod` names everything the toolkit needs to know about a method:
- `options`: its options dataclass, which becomes the `decoding.<name>` recipe section and the
  `DecodingConfig.<name>` field (every options class has an `enabled` flag);
- `stage` and `logits`: where it runs in the composition order (`toolkit.methods.plan`) and its
  per-step function, which `toolkit.graft.composition.compose` wraps in a LogitsProcessor;
- `score`: its teacher-forced multiple-choice value (TruthfulQA / FACTOR), or None;
- `log_probs`: its per-token log-probabilities over the whole vocabulary (the lm-eval backend's
  log-likelihoods), or None;
- `record_field`: the `AugmentedOutput` attribute its per-step records go to, or None;
- `tap`: whether it reads the early-exit tap ("layers": its candidate layers; "final": the
  final-norm hidden state only; "none");
- `exclusive_with`: the methods it cannot run together with (checked both ways); two
  "logits"-stage methods never run together, whatever their lists say;
- `presets`: named option values for task protocols (e.g. TruthfulQA's SLED op_T=10).

Methods come from three places, all equal once registered: the built-ins
(`toolkit/methods/__init__.py`), installed packages that declare an entry point in the group
`model_surgery.methods` (loaded the first time the registry is read), and `register()` calls
(a recipe's `imports:` modules make them before the recipe is read).

This module imports no torch, so validating a recipe stays fast; a method's functions import
the pure math of `toolkit.decoding` when they first run.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from toolkit.core.errors import ConfigError

ENTRY_POINT_GROUP = "model_surgery.methods"
STAGES = ("logits", "temperature", "filter")
TAPS = ("layers", "final", "none")

# DecodingConfig's fields that are not a method: no method may take these names.
RESERVED = ("plugins", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty",
            "max_new_tokens", "seed")
# Eval and bench modes that are not a single registered method.
GREEDY = "greedy"
COMPOSED = "composed"
COMPOSED_METHODS = ("sled", "top_n_sigma", "adaptive_temperature")


@dataclass(frozen=True)
class DecodingMethod:
    """One decoding method (see the module docstring for the meaning of each field).

    Args:
        name: the `decoding.<name>` key and `DecodingConfig` field.
        options: the options dataclass; it must have a bool field `enabled`.
        stage: "logits" (rewrites the raw logits from early layers, before the repetition
            penalty), "temperature" (sets the temperature) or "filter" (after the temperature,
            sampling only).
        label: one-line description of enabled options, e.g. "SLED alpha=2 K=10".
        logits: per-step function. Stage "logits": (scores (B,V), early (B,N,V), options,
            layers) -> (logits (B,V), record (B,...) or None). Stage "filter":
            (scores (B,V), options) -> (B,V). Stage "temperature": the same form, each row
            divided by the temperature the method sets (EDT), or None (the grafted head).
        score: (final (M,V), early (M,N,V), targets (M,), options) -> (M,) teacher-forced
            value at each target token, or None when the method has no scoring mode.
        log_probs: (final (M,V), early (M,N,V), options) -> (M,V) float32 log-probabilities:
            each row a distribution over the whole vocabulary, no floor (lm-eval's
            log-likelihoods), or None when the method has none.
        check: (options, vocab_size) -> None, raising ConfigError for options the model
            cannot run (e.g. SLED's K above the vocabulary), or None.
        record_field: `AugmentedOutput` attribute of its stacked per-step records, or None.
        tap: "layers", "final" or "none" (see the module docstring).
        exclusive_with: names of methods it cannot be enabled together with.
        samples: its eval/bench mode samples (do_sample=True with a fixed seed).
        mode: its eval/bench mode name (default: `name`).
        presets: preset name -> option values, e.g. {"truthfulqa": {"op_T": 10}}.
        layers_key: the options field holding its own candidate layers, or None.
        shorthand: the options field a bare number sets and enables, e.g. `top_n_sigma=1.5`.
    """

    name: str
    options: type
    stage: str
    label: Callable[[Any], str]
    logits: Callable[..., Any] | None = None
    score: Callable[..., Any] | None = None
    log_probs: Callable[..., Any] | None = None
    check: Callable[[Any, int], None] | None = None
    record_field: str | None = None
    tap: str = "none"
    exclusive_with: tuple[str, ...] = ()
    samples: bool = False
    mode: str = ""
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layers_key: str | None = None
    shorthand: str | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"method name {self.name!r} must be a Python identifier")
        if self.stage not in STAGES or self.tap not in TAPS:
            raise ValueError(f"method {self.name!r}: stage must be one of {STAGES}, tap one of {TAPS}")
        if not (dataclasses.is_dataclass(self.options)
                and "enabled" in {f.name for f in dataclasses.fields(self.options)}):
            raise ValueError(f"method {self.name!r}: options must be a dataclass with a bool "
                             "field `enabled`")
        if not self.mode:
            object.__setattr__(self, "mode", self.name)

    def layers_of(self, options: Any) -> Any:
        """The candidate layers `options` (this method's options) set for it: its `layers_key`
        field, or None, the graft's candidate layers (also for a method without one)."""
        return getattr(options, self.layers_key) if self.layers_key else None


_METHODS: dict[str, DecodingMethod] = {}
_entry_points_loaded = False
_broken: list[str] = []  # one line per installed plugin that failed to load


def register(method: DecodingMethod) -> DecodingMethod:
    """Add `method` to the registry (a name or mode may be registered once) and return it.

    Raises:
        ValueError: `method` is not a DecodingMethod, or its name or mode is taken.
    """
    if not isinstance(method, DecodingMethod):
        raise ValueError(f"register() takes a DecodingMethod, not {type(method).__name__}")
    taken = {m.name for m in _METHODS.values()} | {m.mode for m in _METHODS.values()}
    taken |= {GREEDY, COMPOSED, *RESERVED}
    if method.name in taken or method.mode in taken:
        raise ValueError(f"decoding method {method.name!r} (mode {method.mode!r}) is already taken")
    _METHODS[method.name] = method
    return method


def _registry() -> dict[str, DecodingMethod]:
    """The registered methods, after loading the installed plugins' entry points once.

    Raises:
        ConfigError: an installed plugin failed to load (every read raises, naming it).
    """
    if plugin_errors():
        raise ConfigError(_broken[0])
    return _METHODS


def plugin_errors() -> tuple[str, ...]:
    """Why installed plugins failed to load, one line each naming the entry point, its module
    and the fix (empty when every plugin loaded); loads the entry points the first time."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        _broken.clear()
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                _register_entry_point(entry)
            except ConfigError as err:
                _broken.append(str(err))
    return tuple(_broken)


def import_module(name: str) -> None:
    """Import `name`, a module that registers methods when imported (a recipe's `imports:`,
    the lm-eval backend's `imports=`); a failure is one ConfigError line naming it."""
    try:
        importlib.import_module(name)
    except Exception as err:  # the user's module: one line naming it
        raise ConfigError(f"imports: cannot import {name!r} ({type(err).__name__}: "
                          f"{err}); install it or put it on PYTHONPATH") from None


def check_plugins() -> None:
    """Raise ConfigError naming the first installed plugin that failed to load (the CLI calls
    this before any command, so a broken plugin is one line, not a half-run command)."""
    _registry()


def loaded_methods() -> tuple[DecodingMethod, ...]:
    """The methods that did load, even while another plugin is broken (for `--help`)."""
    plugin_errors()
    return tuple(_METHODS.values())


def _register_entry_point(entry: metadata.EntryPoint) -> None:
    package = f"the package {entry.dist.name!r}" if entry.dist else "the package"
    where = f"decoding-method plugin {entry.name!r} ({entry.value}, entry point group " \
            f"{ENTRY_POINT_GROUP})"
    try:
        method = entry.load()
    except Exception as err:  # a broken plugin: one line naming it, not its traceback
        raise ConfigError(f"{where} failed to import ({type(err).__name__}: {err}); fix or "
                          f"uninstall {package} that provides it") from None
    if not isinstance(method, DecodingMethod) or method.name != entry.name:
        raise ConfigError(f"{where} must name a DecodingMethod called {entry.name!r}; fix or "
                          f"uninstall {package} that provides it")
    if entry.name not in _METHODS or _METHODS[entry.name] is not method:
        try:
            register(method)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}; fix or uninstall {package} that "
                              "provides it") from None


def all_methods() -> tuple[DecodingMethod, ...]:
    """Every registered method, in registration order (the composition order within a stage)."""
    return tuple(_registry().values())


def get(name: str) -> DecodingMethod:
    """The method registered as `name` (or with that eval/bench mode name)."""
    for method in _registry().values():
        if name in (method.name, method.mode):
            return method
    raise ConfigError(
        f"unknown decoding method {name!r}; registered: {', '.join(_METHODS)} (a plugin registers "
        f"through the entry point group {ENTRY_POINT_GROUP}, a recipe's `imports:` module or "
        "toolkit.methods.register)"
    )


def options_of(decoding: Any, name: str) -> Any:
    """The options of method `name` in a `DecodingConfig`: its field for a built-in, its entry
    in `plugins` for a plugin (the plugin's defaults, switched off, when absent)."""
    if name in getattr(decoding, "plugins", {}):
        return decoding.plugins[name]
    if name in {f.name for f in dataclasses.fields(decoding)}:
        return getattr(decoding, name)
    return get(name).options()


def active(decoding: Any) -> list[DecodingMethod]:
    """The methods enabled in a `DecodingConfig`, in registration order."""
    return [m for m in _registry().values() if options_of(decoding, m.name).enabled]


def check_exclusive(decoding: Any) -> None:
    """Raise ConfigError when two enabled methods exclude each other (either side may say so),
    or when two enabled methods are "logits"-stage methods (one call runs at most one)."""
    on = active(decoding)
    for i, a in enumerate(on):
        for b in on[i + 1 :]:
            if b.name in a.exclusive_with or a.name in b.exclusive_with:
                raise ConfigError(
                    f"{a.name}.enabled and {b.name}.enabled are both true; enable at most one"
                )
    logits = [m.name for m in on if m.stage == "logits"]
    if len(logits) > 1:
        raise ConfigError(
            f"{logits[0]}.enabled and {logits[1]}.enabled are both true; both rewrite the raw "
            "logits (stage \"logits\") and a call runs one: enable at most one"
        )


def generation_modes() -> tuple[str, ...]:
    """Eval generation modes and bench modes: greedy, one per method, composed."""
    return (GREEDY, *(m.mode for m in _registry().values()), COMPOSED)


def scoring_modes() -> tuple[str, ...]:
    """Multiple-choice scoring modes: greedy and every method with a `score` function."""
    return (GREEDY, *(m.mode for m in _registry().values() if m.score is not None))


def preset_names() -> tuple[str, ...]:
    """Every preset name some method defines."""
    names: dict[str, None] = {}
    for method in _registry().values():
        names.update(dict.fromkeys(method.presets))
    return tuple(names)
