"""SLED (Self Logits Evolution Decoding): its options, per-step function, scoring, presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolkit.core.errors import ConfigError, check_finite, check_layers, check_range
from toolkit.methods.registry import DecodingMethod


@dataclass
class SledOptions:
    """SLED. `layers=None` uses the graft's candidate layers.

    `score_log_softmax` is for multiple-choice scoring only: score the log_softmax of the
    evolved logits (FACTOR) or the raw evolved value (TruthfulQA).
    """

    enabled: bool = False
    evolution_rate: float = 2.0
    evolution_scale: int = 10
    evolution_lower_bound: float = -1000.0
    op_T: int = 1
    layers: Any = None
    score_log_softmax: bool = True

    def __post_init__(self) -> None:
        check_range("sled.evolution_rate", self.evolution_rate, low=0.0, low_open=True)
        check_range("sled.evolution_scale", self.evolution_scale, low=1)
        check_finite("sled.evolution_lower_bound", self.evolution_lower_bound)
        check_range("sled.op_T", self.op_T, low=1)
        check_layers("sled.layers", self.layers)


def _evolution_settings(options: SledOptions) -> dict[str, Any]:
    """The keyword arguments of `sled_evolve` / `sled_details` that `options` sets."""
    return dict(evolution_rate=options.evolution_rate, evolution_scale=options.evolution_scale,
                evolution_lower_bound=options.evolution_lower_bound, op_T=options.op_T)


def step(scores, early, options: SledOptions, layers: list[int]):
    """Evolved logits and the per-layer weights (B, N) of this step."""
    from toolkit.decoding import sled_step

    return sled_step(scores, early, **_evolution_settings(options))


def score(final, early, targets, options: SledOptions):
    """Evolved value at each target token: every position evolved on its own, then the raw
    evolved logit (TruthfulQA protocol) or its log_softmax (FACTOR protocol)."""
    from toolkit.decoding import sled_evolve

    evolved = sled_evolve(final.float(), early.float(), **_evolution_settings(options))
    if options.score_log_softmax:
        evolved = evolved.log_softmax(-1)
    return evolved.gather(-1, targets[:, None])[:, 0]


def log_probs(final, early, options: SledOptions):
    """log_softmax of the evolved logits over the whole vocabulary: the lower bound is not
    applied (tokens outside the top-K keep their evolved value), so every row sums to 1."""
    from toolkit.decoding import sled_details

    result = sled_details(final.float(), early.float(), **_evolution_settings(options))
    return result.evolved.log_softmax(-1)


def check(options: SledOptions, vocab_size: int) -> None:
    """K cannot exceed the vocabulary."""
    if options.evolution_scale > vocab_size:
        raise ConfigError(
            f"sled.evolution_scale={options.evolution_scale} is larger than the vocabulary "
            f"({vocab_size} tokens); choose a value in 1..{vocab_size}"
        )


def label(options: SledOptions) -> str:
    return f"SLED alpha={options.evolution_rate:g} K={options.evolution_scale}"


METHOD = DecodingMethod(
    name="sled", options=SledOptions, stage="logits", label=label, logits=step, score=score,
    log_probs=log_probs, check=check, record_field="sled_layer_weights", tap="layers",
    layers_key="layers",
    # The reference multiple-choice protocols: TruthfulQA sums the raw evolved value after
    # 10 evolution steps with lower bound -100; FACTOR the log_softmax after 1 step, -2500.
    presets={
        "truthfulqa": dict(op_T=10, evolution_lower_bound=-100.0, score_log_softmax=False),
        "factor": dict(op_T=1, evolution_lower_bound=-2500.0, score_log_softmax=True),
    },
)
