"""Adaptive temperature: the grafted head picks the temperature, per reply or per token.

The level (sequence or token) is the head's own, `graft.head.level`: set once, when grafting.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.core.errors import check_choice
from toolkit.methods.registry import DecodingMethod

ADAPTIVE_CHOICES = ("argmax", "sample")


@dataclass
class AdaptiveOptions:
    """Adaptive temperature from the head; `choice`: its argmax or a draw from it."""

    enabled: bool = False
    choice: str = "argmax"

    def __post_init__(self) -> None:
        check_choice("adaptive_temperature.choice", self.choice, ADAPTIVE_CHOICES)


def label(options: AdaptiveOptions) -> str:
    return "adaptive temperature" + (" (sampled)" if options.choice == "sample" else "")


METHOD = DecodingMethod(
    name="adaptive_temperature", options=AdaptiveOptions, stage="temperature", label=label,
    record_field="temperature_index", tap="final", samples=True, mode="adaptive",
)
