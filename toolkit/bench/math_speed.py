"""A mode's per-step decoding math timed against one `log_softmax` over the same early logits.

SLED and DoLa read the (B, N, V) early logits of every step; one `log_softmax` over them
(written into a kept tensor, so no page faults) is the least a method that normalises every
layer must do, so `math ms / log_softmax ms` says how far a method's arithmetic is from that
limit. The math of a mode is what its processors compute on a step's logits, in the order
`AugmentedModel.generate` applies them (`toolkit.methods.plan`): the logits-stage method (SLED,
DoLa, ...) on the raw logits and the early logits of its candidate layers, the adaptive head's
temperature or a temperature method's (EDT), then the filters (top-n-sigma, ...) when the mode
samples. It leaves out the projection of the early rows (the floor has it)
and the token draw. Inputs are one real step of the model: the last prompt position.

On a CPU both are timed in this thread's CPU time (`time.thread_time`), not wall time: on a
shared machine a computation of a few milliseconds is preempted more often than one of one
millisecond, which would skew the ratio; on CUDA in wall time, synchronised.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from toolkit import methods
from toolkit.decoding import apply_temperature
from toolkit.methods.plan import plan

CALLS = 3  # each sample is the median of this many back-to-back calls


@dataclass
class StepInputs:
    """One decoding step's inputs: scores (B, V) float32, early (B, N, V) of the tap's candidate
    `layers`, hidden (B, d)."""

    scores: torch.Tensor
    early: torch.Tensor
    hidden: torch.Tensor
    layers: tuple[int, ...]


def capture_step(am: Any, ids: torch.Tensor, layers: Any = None) -> StepInputs:
    """The final logits, early logits of `layers` (None: the graft's candidate layers; as
    `EarlyExitTap.for_layers`) and final hidden state of the last position of `ids`."""
    tap = am.tap.for_layers(layers)
    with torch.no_grad(), tap.capture(last_only=True):
        logits = am.base(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        early, hidden = tap.early_logits(), tap.final_hidden()
    return StepInputs(logits[:, -1].float(), early, hidden, tuple(tap.candidate_layers))


@dataclass
class StepMath:
    """A mode's per-step math (`run`) and the candidate layers its logits step reads (None:
    the graft's)."""

    run: Callable[[StepInputs], torch.Tensor]
    layers: Any = None


def step_math(am: Any, decoding: Any) -> StepMath | None:
    """The per-step math of the mode `decoding` (see the module docstring), its steps and
    their order from `toolkit.methods.plan`; None without any method (greedy, plain sampling,
    the floor)."""
    if not methods.active(decoding):
        return None
    steps = plan(decoding)
    temperature = steps.temperature

    def run(step: StepInputs) -> torch.Tensor:
        scores = step.scores
        if steps.logits is not None:
            scores, _ = steps.logits.method.logits(scores, step.early, steps.logits.options,
                                                   list(step.layers))
        if temperature is not None and temperature.head is not None:
            weight = next(am.head.parameters())
            index = am.head.choose(step.hidden.to(device=weight.device, dtype=weight.dtype))
            scores = apply_temperature(scores, am.head.temperatures[index].to(scores.device))
        elif temperature is not None and temperature.method is not None:
            scores = temperature.method.method.logits(scores, temperature.method.options)
        for f in steps.filters:
            scores = f.method.logits(scores, f.options)
        return scores

    return StepMath(run, None if steps.logits is None else steps.logits.layers)


def _median_ms(fn: Callable[[], Any], device: torch.device) -> float:
    clock = time.perf_counter if device.type == "cuda" else time.thread_time
    times = []
    for _ in range(CALLS):
        start = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((clock() - start) * 1e3)
    return statistics.median(times)


class MathTimer:
    """Times each mode's step math and one log_softmax on the same captured step, per batch."""

    def __init__(self, am: Any, ids: dict[int, torch.Tensor], decodings: dict[str, Any]):
        self.am, self.ids = am, ids
        self.math = {m: step_math(am, d) for m, d in decodings.items()}
        self.inputs: dict[tuple[int, str], StepInputs] = {}
        self.kept: dict[tuple[int, str], torch.Tensor] = {}

    def _step(self, batch: int, mode: str) -> StepInputs:
        """The captured step of `batch` for `mode`'s candidate layers (captured once per batch
        and layer set)."""
        layers = self.math[mode].layers
        key = (batch, repr(layers))
        if key not in self.inputs:
            self.inputs[key] = capture_step(self.am, self.ids[batch], layers)
            self.kept[key] = torch.empty_like(self.inputs[key].early)
        return self.inputs[key]

    def sample(self, batch: int, mode: str) -> dict[str, float]:
        """{"math_ms", "log_softmax_ms"} of one sample (each a median of CALLS calls);
        {} for a mode without math."""
        math = self.math[mode]
        if math is None:
            return {}
        step = self._step(batch, mode)
        kept = self.kept[(batch, repr(math.layers))]
        device = step.early.device
        with torch.no_grad():
            log_softmax = _median_ms(lambda: torch.ops.aten._log_softmax.out(
                step.early, -1, False, out=kept), device)
            return {"math_ms": _median_ms(lambda: math.run(step), device),
                    "log_softmax_ms": log_softmax}
