"""The registry of decoding methods: one entry per method, read by every part that lists them.

A `DecodingMethod` names everything the toolkit needs to know about a method:
- `options`: its options dataclass, which becomes the `decoding.<name>` recipe section and the
  `DecodingConfig.<name>` field (every options class has an `enabled` flag);
- `stage` and `logits`: where it runs in the composition order and its per-step function, which
  `toolkit.graft.processors.method_processor` (the logits-processor factory) wraps;
- `score`: its teacher-forced multiple-choice value (TruthfulQA / FACTOR), or None;
- `log_probs`: its per-token log-probabilities over the whole vocabulary (the lm-eval backend's
  log-likelihoods), or None;
- `record_field`: the `AugmentedOutput` attribute its per-step records go to, or None;
- `tap`: whether it reads the early-exit tap ("layers": its candidate layers; "final": the
  final-norm hidden state only; "none");
- `exclusive_with`: the methods it cannot run together with (checked both ways);
- `presets`: named option values for task protocols (e.g. TruthfulQA's SLED op_T=10).

This module imports no torch, so validating a recipe stays fast; a method's functions import
the pure math of `toolkit.decoding` when they first run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import ConfigError

STAGES = ("logits", "temperature", "filter")
TAPS = ("layers", "final", "none")

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
            (scores (B,V), options) -> (B,V). None for the "temperature" stage (the head).
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
        if self.stage not in STAGES or self.tap not in TAPS:
            raise ValueError(f"method {self.name!r}: stage must be one of {STAGES}, tap one of {TAPS}")
        if not self.mode:
            object.__setattr__(self, "mode", self.name)


_METHODS: dict[str, DecodingMethod] = {}


def register(method: DecodingMethod) -> DecodingMethod:
    """Add `method` to the registry (a name or mode may be registered once) and return it."""
    taken = {m.name for m in _METHODS.values()} | {m.mode for m in _METHODS.values()}
    taken |= {GREEDY, COMPOSED}
    if method.name in taken or method.mode in taken:
        raise ValueError(f"decoding method {method.name!r} (mode {method.mode!r}) is already taken")
    _METHODS[method.name] = method
    return method


def all_methods() -> tuple[DecodingMethod, ...]:
    """Every registered method, in registration order (the composition order within a stage)."""
    return tuple(_METHODS.values())


def get(name: str) -> DecodingMethod:
    """The method registered as `name` (or with that eval/bench mode name)."""
    for method in _METHODS.values():
        if name in (method.name, method.mode):
            return method
    raise ConfigError(f"unknown decoding method {name!r}; registered: {', '.join(_METHODS)}")


def active(decoding: Any) -> list[DecodingMethod]:
    """The methods enabled in a `DecodingConfig`, in registration order."""
    return [m for m in _METHODS.values() if getattr(decoding, m.name).enabled]


def check_exclusive(decoding: Any) -> None:
    """Raise ConfigError when two enabled methods exclude each other (either side may say so)."""
    on = active(decoding)
    for i, a in enumerate(on):
        for b in on[i + 1 :]:
            if b.name in a.exclusive_with or a.name in b.exclusive_with:
                raise ConfigError(
                    f"{a.name}.enabled and {b.name}.enabled are both true; enable at most one"
                )


def generation_modes() -> tuple[str, ...]:
    """Eval generation modes and bench modes: greedy, one per method, composed."""
    return (GREEDY, *(m.mode for m in _METHODS.values()), COMPOSED)


def scoring_modes() -> tuple[str, ...]:
    """Multiple-choice scoring modes: greedy and every method with a `score` function."""
    return (GREEDY, *(m.mode for m in _METHODS.values() if m.score is not None))


def preset_names() -> tuple[str, ...]:
    """Every preset name some method defines."""
    names: dict[str, None] = {}
    for method in _METHODS.values():
        names.update(dict.fromkeys(method.presets))
    return tuple(names)
