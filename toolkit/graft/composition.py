"""A decoding plan (`toolkit.methods.plan`, which states the order) made into transformers
LogitsProcessors: the one function, `compose`, that both runners call.

`AugmentedModel.generate` runs every step of the plan with these processors (transformers' own
temperature, top-k, top-p and repetition penalty switched off). `custom_generate` splices the
logits and filter steps into the list transformers builds from its generation_config, whose
own processors carry the penalty, temperature, top-k and top-p there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from toolkit.core.errors import ConfigError
from toolkit.graft.processors import (
    AdaptiveTemperatureLogitsProcessor,
    EarlyExitLogitsProcessor,
    FilterLogitsProcessor,
    PromptAwareRepetitionPenalty,
    RowSeeds,
    TemperatureLogitsProcessor,
)
from toolkit.graft.tap import EarlyExitTap
from toolkit.methods.plan import DecodingPlan, Temperature

# The tap a step reads: tap_for(layers) for the logits step (None: the graft's candidate
# layers); tap_for(None, final_only=True) for the head (the final norm's output alone).
TapFor = Callable[..., EarlyExitTap]


@dataclass
class Composed:
    """One plan's processors, by step (a list is empty when its step does not run), the one tap
    they read (None: the call needs no hooks), and the processors whose records a call keeps."""

    logits: list[LogitsProcessor] = field(default_factory=list)
    penalty: list[LogitsProcessor] = field(default_factory=list)
    temperature: list[LogitsProcessor] = field(default_factory=list)
    filters: list[LogitsProcessor] = field(default_factory=list)
    truncation: list[LogitsProcessor] = field(default_factory=list)
    tap: EarlyExitTap | None = None
    early_exit: EarlyExitLogitsProcessor | None = None
    adaptive: AdaptiveTemperatureLogitsProcessor | None = None

    def processors(self) -> list[LogitsProcessor]:
        """Every step's processors in the plan's order."""
        return [*self.logits, *self.penalty, *self.temperature, *self.filters, *self.truncation]

    @property
    def layers(self) -> list[int] | None:
        """The candidate layers the logits step reads (None: no logits step)."""
        return None if self.early_exit is None else self.early_exit.layers


def compose(plan: DecodingPlan, tap_for: TapFor, *, head: Any = None, per_token: bool = False,
            attention_mask: torch.Tensor | None = None, record: bool = False,
            seed: int | list[int] | None = None, rows_per_seed: int = 1) -> Composed:
    """The processors of `plan`.

    Args:
        plan: what the call runs (`toolkit.methods.plan.plan`).
        tap_for: gives the tap (see `TapFor`); called once at most for the whole call: the
            head reads the logits step's tap when there is one.
        head: the grafted `AdaptiveDecoderHead`, needed when the plan's temperature is the head.
        per_token: the head chooses anew at every token (else once per reply).
        attention_mask: (B, T_prompt) of the left-padded prompts, needed for a repetition
            penalty (a row's padding does not count).
        record: the logits step keeps its per-step records.
        seed: seeds the generator the head draws with (`choice: sample`); a list: one per
            prompt, each drawing for its `rows_per_seed` rows (`RowSeeds`).
    """
    out = Composed()
    if plan.logits is not None:
        out.tap = tap_for(plan.logits.layers)
        out.early_exit = EarlyExitLogitsProcessor(out.tap, plan.logits.method,
                                                  plan.logits.options, record=record)
        out.logits.append(out.early_exit)
    if plan.repetition_penalty is not None:
        padding = (attention_mask != 0).int().argmax(dim=1)
        out.penalty.append(PromptAwareRepetitionPenalty(plan.repetition_penalty,
                                                        prompt_ignore_length=padding))
    if plan.temperature is not None:
        _temperature(out, plan.temperature, tap_for, head, per_token, seed, rows_per_seed)
    out.filters = [FilterLogitsProcessor(step.method, step.options) for step in plan.filters]
    if plan.top_k is not None:
        out.truncation.append(TopKLogitsWarper(plan.top_k))
    if plan.top_p is not None:
        out.truncation.append(TopPLogitsWarper(plan.top_p))
    return out


def _temperature(out: Composed, temperature: Temperature, tap_for: TapFor, head: Any,
                 per_token: bool, seed: int | list[int] | None, rows_per_seed: int) -> None:
    if temperature.method is not None:  # e.g. EDT: a function of the logits, like a filter
        out.temperature.append(FilterLogitsProcessor(temperature.method.method,
                                                     temperature.method.options))
        return
    if temperature.head is None:
        fixed = (TemperatureLogitsProcessor(0.0) if temperature.value == 0.0
                 else TemperatureLogitsWarper(temperature.value))
        out.temperature.append(fixed)
        return
    if head is None:
        raise ConfigError(f"{temperature.head.method.name} needs the grafted head; decode with "
                          "AugmentedModel.generate")
    sample = temperature.head.options.choice == "sample"
    out.tap = out.tap or tap_for(None, final_only=True)
    generator = None
    if seed is not None and sample:
        device = next(head.parameters()).device
        generator = (RowSeeds(seed, rows_per_seed, device) if isinstance(seed, list)
                     else torch.Generator(device=device).manual_seed(seed))
    out.adaptive = AdaptiveTemperatureLogitsProcessor(out.tap, head, per_token=per_token,
                                                      sample=sample, generator=generator)
    out.temperature.append(out.adaptive)
