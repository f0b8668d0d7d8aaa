"""The decoding plan: what one generate() call runs at every step, and in which order.

`plan(options)` reads a `DecodingConfig` and describes the call without torch or transformers,
so every runner takes it from here: `AugmentedModel.generate` and `custom_generate` turn it into
transformers LogitsProcessors (`toolkit.graft.composition.compose`), and a serving engine can
read it per request. At each step, in this order:

1. **logits**: the one enabled "logits"-stage method (SLED, DoLa, contrastive decoding, or a
   plugin's) rewrites the raw final logits with the early-exit logits of its candidate layers
   (`DecodingMethod.layers_of(options)`; None: the graft's). The registry refuses two such
   methods in one call, so one tap serves the call.
2. **repetition penalty**, when set and not 1 (transformers' rule; `AugmentedModel.generate`
   does not count a row's left padding).
3. **temperature**: the adaptive head (the "temperature"-stage method without a function of
   its own, `adaptive_temperature`, with its options: the head's argmax or a draw from it; per
   reply or per token as the head was grafted), whether or not sampling; else, when sampling,
   a "temperature"-stage method with its own function (EDT: each row's temperature from its
   entropy), in place of the fixed temperature; else, when sampling, the fixed `temperature`
   (0: one-hot on the argmax; 1: nothing to do). The registry lets one of them be enabled.
4. **filters**, sampling only: every enabled "filter"-stage method in registration order
   (top-n-sigma, then typical sampling, then plugins').
5. **top-k**, sampling only (0 or unset: none).
6. **top-p**, sampling only (1 or unset: none).
7. **the token**: a draw from the softmax when `do_sample`, else the argmax.

Around these steps transformers keeps its own: its constraint processors (min-new-tokens, bad
words, ...) run before step 1; a caller's `logits_processor` and its remaining warpers (min-p,
epsilon, ...) after step 6.

The plan takes the settings as they are: resolve unset ones (None) first, as
`AugmentedModel.generate` does from the model's generation_config
(`toolkit.graft.hf_generate.effective_options`); whatever is still unset is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolkit.methods.registry import DecodingMethod, active, check_exclusive, options_of


@dataclass(frozen=True)
class MethodStep:
    """A registered method at its step: its options, and for a "logits"-stage method its own
    candidate layers (`DecodingMethod.layers_of`; None: the graft's)."""

    method: DecodingMethod
    options: Any
    layers: Any = None


@dataclass(frozen=True)
class Temperature:
    """Step 3: the adaptive head with its options (`head`), a temperature method with its own
    function (`method`, e.g. EDT), or a fixed `value`."""

    value: float | None = None
    head: MethodStep | None = None
    method: MethodStep | None = None


@dataclass(frozen=True)
class DecodingPlan:
    """One call's steps (module docstring); a step that does not run is None (or empty)."""

    logits: MethodStep | None
    repetition_penalty: float | None
    temperature: Temperature | None
    filters: tuple[MethodStep, ...]
    top_k: int | None
    top_p: float | None
    do_sample: bool


def plan(options: Any) -> DecodingPlan:
    """The steps a `DecodingConfig` runs, in the order of the module docstring.

    Args:
        options: a `DecodingConfig` (any object with its fields: the methods' options are
            read with `toolkit.methods.options_of`).

    Raises:
        ConfigError: two enabled methods that cannot run together (`check_exclusive`; a
            `DecodingConfig` refuses them when built, this catches one changed since).
    """
    check_exclusive(options)
    on = active(options)
    sampling = bool(options.do_sample)
    logits = next((_step(m, options) for m in on if m.stage == "logits"), None)
    head = next((_step(m, options) for m in on if m.stage == "temperature" and m.logits is None),
                None)
    own = next((_step(m, options) for m in on if m.stage == "temperature" and m.logits), None)
    filters = tuple(_step(m, options) for m in on if m.stage == "filter") if sampling else ()
    return DecodingPlan(
        logits=logits,
        repetition_penalty=_unless(options.repetition_penalty, 1.0),
        temperature=_temperature(head, own if sampling else None,
                                 options.temperature if sampling else None),
        filters=filters,
        top_k=(options.top_k or None) if sampling else None,
        top_p=_unless(options.top_p, 1.0) if sampling else None,
        do_sample=sampling,
    )


def _step(method: DecodingMethod, options: Any) -> MethodStep:
    own = options_of(options, method.name)
    return MethodStep(method, own, method.layers_of(own))


def _temperature(head: MethodStep | None, own: MethodStep | None,
                 value: float | None) -> Temperature | None:
    if head is not None:
        return Temperature(head=head)
    if own is not None:
        return Temperature(method=own)
    value = _unless(value, 1.0)
    return None if value is None else Temperature(value=value)


def _unless(value: Any, neutral: Any) -> Any:
    """`value`, or None when it is unset or the neutral value that changes nothing."""
    return None if value is None or value == neutral else value
