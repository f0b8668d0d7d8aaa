"""DoLa (the baseline SLED is compared with): options, per-step function, scoring, presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolkit.core.errors import check_layers, check_range
from toolkit.methods.registry import DecodingMethod


@dataclass
class DolaOptions:
    """DoLa. `layers=None` uses the graft's candidate layers.

    relative_top: keep tokens with log p >= max log p + log(relative_top); 0 keeps every token.
    relative_top_value: multiple-choice scoring only, the value a filtered token scores instead
        of -inf (the reference's -1000, so sums stay finite); generation always uses -inf.
    """

    enabled: bool = False
    relative_top: float = 0.1
    layers: Any = None
    relative_top_value: float = -1000.0

    def __post_init__(self) -> None:
        check_range("dola.relative_top", self.relative_top, low=0.0, high=1.0)
        check_layers("dola.layers", self.layers)


def step(scores, early, options: DolaOptions, layers: list[int]):
    """Contrasted logits and the chosen layer number (B,) of this step."""
    import torch

    from toolkit.decoding import dola_values

    logits, chosen = dola_values(scores, early, relative_top=options.relative_top)
    return logits, torch.as_tensor(layers, device=chosen.device)[chosen]


def score(final, early, targets, options: DolaOptions):
    """Contrast at each target token; filtered tokens score `relative_top_value`."""
    from toolkit.decoding import dola_values

    contrast, _ = dola_values(final.float(), early.float(), relative_top=options.relative_top,
                              filtered_value=options.relative_top_value)
    return contrast.gather(-1, targets[:, None])[:, 0]


def log_probs(final, early, options: DolaOptions):
    """log_softmax over the whole vocabulary of log p_N - log p_j, without the relative-top
    filter (DoLa's TruthfulQA MC setting, relative_top 0, with its post-softmax)."""
    from toolkit.decoding import dola_values

    contrast, _ = dola_values(final.float(), early.float(), relative_top=0.0)
    return contrast.log_softmax(-1)


def label(options: DolaOptions) -> str:
    return "DoLa"


METHOD = DecodingMethod(
    name="dola", options=DolaOptions, stage="logits", label=label, logits=step, score=score,
    log_probs=log_probs, record_field="dola_layer", tap="layers", layers_key="layers",
    # TruthfulQA MC runs without the relative-top filter (reference `--relative_top 0.0`).
    presets={"truthfulqa": dict(relative_top=0.0), "factor": dict(relative_top=0.1)},
)
