"""p-less sampling: keep the tokens at least as probable as the row's collision probability."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.methods.registry import DecodingMethod


@dataclass
class PLessOptions:
    """p-less sampling (sampling only; docs/methods.md section 4c). It has no hyperparameter:
    `enabled` is its only option."""

    enabled: bool = False


def step(scores, options: PLessOptions):
    from toolkit.decoding import p_less_filter

    return p_less_filter(scores)


def label(options: PLessOptions) -> str:
    return "p-less"


METHOD = DecodingMethod(
    name="p_less", options=PLessOptions, stage="filter", label=label, logits=step, samples=True,
)
