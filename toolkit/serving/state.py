"""What one vLLM process serves, and the hidden states of the step being sampled.

vLLM runs the model and the sampler in the same worker process: the model's `compute_logits`
(toolkit.serving.model) publishes the final and early hidden states of the rows it computed
logits for, and the logits processors (toolkit.serving.processors) read them in the sampler
of the same step. The frontend process (the OpenAI server) knows the served checkpoint from
its config parser (toolkit.serving.config), which is how request validation knows whether SLED
can run at all and how large the vocabulary is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.io.layout import CONFIG_FILE
from toolkit.methods.options import DecodingConfig, GraftConfig


@dataclass(frozen=True)
class Served:
    """A model-surgery checkpoint served by this process.

    layers: the tap's candidate layers in order (L, the number of decoder layers, stands for
    the model's own final logits); every request's method reads a subset of them.
    """

    directory: Path
    base_path: str
    graft: GraftConfig
    decoding: DecodingConfig
    vocab_size: int
    num_layers: int
    tied: bool
    layers: tuple[int, ...]
    head_state: dict[str, Any] = field(default_factory=dict, repr=False)


_served: dict[str, Served] = {}


def is_checkpoint(path: Any) -> bool:
    """Whether `path` is a local folder holding a model-surgery checkpoint."""
    try:
        return Path(str(path), CONFIG_FILE).is_file()
    except (OSError, ValueError):
        return False


def remember(served: Served) -> Served:
    _served[str(served.directory)] = served
    return served


def served(path: Any = None) -> Served | None:
    """The checkpoint served at `path` (resolved), or the one this process serves when `path` is
    None and there is exactly one; None for any other model."""
    if path is None:
        return next(iter(_served.values())) if len(_served) == 1 else None
    return _served.get(str(Path(str(path)).resolve()))


@dataclass
class StepStates:
    """The hidden states of the rows whose logits the model computed last.

    final: (B, d) the final-norm hidden state (the adaptive head's input).
    early: (B, N_early, d) the early layers' states (before any norm), or None.
    model: the model that computed them (projects states into logits, holds the head).
    """

    final: Any
    early: Any
    model: Any


_step: dict[str, StepStates] = {}


def publish(states: StepStates) -> None:
    _step["current"] = states


def current(rows: int) -> StepStates:
    """The published states; they must cover `rows` logits rows (the batch being sampled)."""
    states = _step.get("current")
    if states is None or states.final.shape[0] != rows:
        found = None if states is None else states.final.shape[0]
        raise RuntimeError(
            f"model-surgery: the sampler has {rows} logits rows but the model published hidden "
            f"states for {found}; this vLLM configuration (e.g. speculative decoding or "
            "pipeline parallelism) is not supported by the plugin"
        )
    return states
