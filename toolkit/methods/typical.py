"""Locally typical sampling: keep the tokens whose surprise is close to the entropy."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.core.errors import check_range
from toolkit.methods.registry import DecodingMethod


@dataclass
class TypicalOptions:
    """Typical sampling (sampling only): keep the most typical tokens up to probability `mass`.

    mass: 0 < mass <= 1; 1 keeps every token (the filter is a no-op). Meister et al. use 0.2
        for story generation and 0.95 for summarisation; 0.9 is a middle default.
    """

    enabled: bool = False
    mass: float = 0.9

    def __post_init__(self) -> None:
        check_range("typical.mass", self.mass, low=0.0, high=1.0, low_open=True)


def step(scores, options: TypicalOptions):
    from toolkit.decoding import typical_filter

    return typical_filter(scores, options.mass)


def label(options: TypicalOptions) -> str:
    return f"typical mass={options.mass:g}"


METHOD = DecodingMethod(
    name="typical", options=TypicalOptions, stage="filter", label=label, logits=step,
    samples=True, shorthand="mass",
)
