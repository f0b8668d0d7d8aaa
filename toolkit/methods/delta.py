"""DeLTa: extrapolate each token's logit along its trajectory over the layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolkit.core.errors import ConfigError, check_layers, check_range
from toolkit.methods.registry import DecodingMethod


@dataclass
class DeltaOptions:
    """DeLTa (docs/methods.md section 3c). `layers=None` uses the graft's candidate layers; they
    must be consecutive and end right below the final layer (the default `all` does).

    virtual_offset: where the fitted lines are read, in layers above the final one (>= 0).
    relative_top: keep tokens with log p >= max log p + log(relative_top); 0 keeps every token.
    relative_top_value: multiple-choice scoring only, the value of a filtered token.
    """

    enabled: bool = False
    virtual_offset: float = 1.0
    relative_top: float = 0.1
    layers: Any = None
    relative_top_value: float = -1000.0

    def __post_init__(self) -> None:
        check_range("delta.virtual_offset", self.virtual_offset, low=0.0)
        check_range("delta.relative_top", self.relative_top, low=0.0, high=1.0)
        check_range("delta.relative_top_value", self.relative_top_value)
        check_layers("delta.layers", self.layers)


def _settings(options: DeltaOptions) -> dict[str, Any]:
    return dict(virtual_offset=options.virtual_offset, relative_top=options.relative_top)


def step(scores, early, options: DeltaOptions, layers: list[int]):
    """DeLTa's log-probabilities over the tap's layers; no per-step record."""
    from toolkit.decoding import delta_logits

    if list(layers) != list(range(layers[0], layers[0] + len(layers))):
        raise ConfigError(
            f"DeLTa fits a line through consecutive layers, but the tap captures {list(layers)}; "
            "set delta.layers (or graft.layers) to 'all' or a range of layers ending below the "
            "final one"
        )
    return delta_logits(scores, early, **_settings(options)), None


def score(final, early, targets, options: DeltaOptions):
    """DeLTa's log-probability at each target token; filtered tokens score relative_top_value."""
    from toolkit.decoding import delta_logits

    values = delta_logits(final.float(), early.float(), **_settings(options),
                          filtered_value=options.relative_top_value)
    return values.gather(-1, targets[:, None])[:, 0]


def log_probs(final, early, options: DeltaOptions):
    """log_softmax of the extrapolated logits over the whole vocabulary (no filter)."""
    from toolkit.decoding import delta_extrapolate

    pred = delta_extrapolate(final.float(), early.float(), virtual_offset=options.virtual_offset)
    return pred.log_softmax(-1)


def label(options: DeltaOptions) -> str:
    return f"DeLTa +{options.virtual_offset:g}"


METHOD = DecodingMethod(
    name="delta", options=DeltaOptions, stage="logits", label=label, logits=step, score=score,
    log_probs=log_probs, tap="layers", layers_key="layers",
    exclusive_with=("sled", "dola", "contrastive"),
    # TruthfulQA MC scores the whole distribution, as DoLa's protocol (no relative-top filter).
    presets={"truthfulqa": dict(relative_top=0.0)},
)
