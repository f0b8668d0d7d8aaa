"""Entropy-based dynamic temperature (EDT): each step's temperature from its entropy.

It sets the temperature, so it runs at the temperature's place in the composition order
(sampling only) and replaces any fixed temperature; the filters after it see its output. The
adaptive head sets the temperature too: the two cannot be enabled together.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.core.errors import check_range
from toolkit.methods.registry import DecodingMethod


@dataclass
class EdtOptions:
    """EDT (docs/methods.md section 5b): T = t0 * base ** (theta / H), H the entropy in nats.

    t0: the largest temperature (T approaches it as the entropy grows), > 0.
    theta: how strongly a low entropy lowers the temperature, >= 0 (0: always t0).
    base: the paper's N, 0 < base <= 1 (the paper fixes 0.8).
    """

    enabled: bool = False
    t0: float = 1.0
    theta: float = 1.0
    base: float = 0.8

    def __post_init__(self) -> None:
        check_range("edt.t0", self.t0, low=0.0, low_open=True)
        check_range("edt.theta", self.theta, low=0.0)
        check_range("edt.base", self.base, low=0.0, high=1.0, low_open=True)


def step(scores, options: EdtOptions):
    from toolkit.decoding import edt_logits

    return edt_logits(scores, options.t0, options.theta, options.base)


def label(options: EdtOptions) -> str:
    return f"EDT t0={options.t0:g} theta={options.theta:g}"


METHOD = DecodingMethod(
    name="edt", options=EdtOptions, stage="temperature", label=label, logits=step, samples=True,
    exclusive_with=("adaptive_temperature",),
)
