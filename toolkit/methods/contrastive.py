"""Contrastive decoding against an early layer as the amateur: options, step, scoring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolkit.core.errors import check_layers, check_range
from toolkit.methods.registry import DecodingMethod


@dataclass
class ContrastiveOptions:
    """Contrastive decoding: log p_final - log p_amateur over the alpha-plausible tokens.

    alpha: keep tokens with p >= alpha * max p under the final layer (0 < alpha <= 1).
    layers: the layers the tap captures; the amateur is the first (lowest) of them. None: the
        graft's candidate layers; `[2]` makes layer 2 the amateur and captures only it.
    score_filtered_value: multiple-choice scoring only, the value of an implausible token
        (generation uses -inf).
    """

    enabled: bool = False
    alpha: float = 0.1
    layers: Any = None
    score_filtered_value: float = -1000.0

    def __post_init__(self) -> None:
        check_range("contrastive.alpha", self.alpha, low=0.0, high=1.0, low_open=True)
        check_layers("contrastive.layers", self.layers)


def step(scores, early, options: ContrastiveOptions, layers: list[int]):
    """Contrastive logits against the first captured layer; no per-step record."""
    from toolkit.decoding import contrastive_logits

    return contrastive_logits(scores, early[:, 0], alpha=options.alpha), None


def score(final, early, targets, options: ContrastiveOptions):
    """Contrastive value at each target token; implausible tokens score the filtered value."""
    from toolkit.decoding import contrastive_scores

    return contrastive_scores(final, early[:, 0], targets, alpha=options.alpha,
                              filtered_value=options.score_filtered_value)


def label(options: ContrastiveOptions) -> str:
    return f"contrastive alpha={options.alpha:g}"


METHOD = DecodingMethod(
    name="contrastive", options=ContrastiveOptions, stage="logits", label=label, logits=step,
    score=score, tap="layers", layers_key="layers",
)
