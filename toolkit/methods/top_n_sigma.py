"""Top-n-sigma: keep the tokens within n standard deviations of the top logit."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.core.errors import check_finite
from toolkit.methods.registry import DecodingMethod


@dataclass
class TopNSigmaOptions:
    """Top-n-sigma (sampling only): tokens below max - n * std become -inf.

    n <= 0 means off, as llama.cpp's `--top-n-sigma -1`: it is accepted and stored with
    enabled=False, so every label, record and report says top-n-sigma is off.
    """

    enabled: bool = False
    n: float = 1.0

    def __post_init__(self) -> None:
        check_finite("top_n_sigma.n", self.n)
        if self.n <= 0:
            self.enabled = False


def step(scores, options: TopNSigmaOptions):
    from toolkit.decoding import top_n_sigma

    return top_n_sigma(scores, options.n)


def label(options: TopNSigmaOptions) -> str:
    return f"top-n-sigma n={options.n:g}"


METHOD = DecodingMethod(
    name="top_n_sigma", options=TopNSigmaOptions, stage="filter", label=label, logits=step,
    samples=True, shorthand="n",
)
