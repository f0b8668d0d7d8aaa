"""A mode's per-step decoding math timed against one `log_softmax` over the same early logits.

SLED and DoLa read the (B, N, V) early logits of every step; one `log_softmax` over them
(written into a kept tensor, so no page faults) is the least a method that normalises every
layer must do, so `math ms / log_softmax ms` says how far a method's arithmetic is from that
limit. The math of a mode is what its processors compute on a step's logits, in the order
`AugmentedModel.generate` applies them: the logits-stage methods (SLED, DoLa, ...) on the raw
logits and the early logits, the adaptive head's temperature, then the filters (top-n-sigma,
...) when the mode samples. It leaves out the projection of the early rows (the floor has it)
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

CALLS = 3  # each sample is the median of this many back-to-back calls


@dataclass
class StepInputs:
    """One decoding step's inputs: scores (B, V) float32, early (B, N, V), hidden (B, d)."""

    scores: torch.Tensor
    early: torch.Tensor
    hidden: torch.Tensor


def capture_step(am: Any, ids: torch.Tensor) -> StepInputs:
    """The final logits, early logits and final hidden state of the last position of `ids`."""
    with torch.no_grad(), am.tap.capture(last_only=True):
        logits = am.base(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        early, hidden = am.tap.early_logits(), am.tap.final_hidden()
    return StepInputs(logits[:, -1].float(), early, hidden)


def step_math(am: Any, decoding: Any) -> Callable[[StepInputs], torch.Tensor] | None:
    """The per-step math of the mode `decoding` (see the module docstring); None without any
    method (greedy, plain sampling, the floor)."""
    active = methods.active(decoding)
    if not active:
        return None
    layers = list(am.tap.candidate_layers)
    logits_stage = [(m, decoding.method(m.name)) for m in active if m.stage == "logits"]
    filters = [(m, decoding.method(m.name)) for m in active
               if m.stage == "filter" and decoding.do_sample]
    adaptive = any(m.stage == "temperature" for m in active)

    def run(step: StepInputs) -> torch.Tensor:
        scores = step.scores
        for method, options in logits_stage:
            scores, _ = method.logits(scores, step.early, options, layers)
        if adaptive:
            weight = next(am.head.parameters())
            index = am.head.choose(step.hidden.to(device=weight.device, dtype=weight.dtype))
            scores = apply_temperature(scores, am.head.temperatures[index].to(scores.device))
        for method, options in filters:
            scores = method.logits(scores, options)
        return scores

    return run


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
        self.inputs = {b: capture_step(am, x) for b, x in ids.items()}
        self.math = {m: step_math(am, d) for m, d in decodings.items()}
        self.kept = {b: torch.empty_like(s.early) for b, s in self.inputs.items()}

    def sample(self, batch: int, mode: str) -> dict[str, float]:
        """{"math_ms", "log_softmax_ms"} of one sample (each a median of CALLS calls);
        {} for a mode without math."""
        math, step = self.math[mode], self.inputs[batch]
        if math is None:
            return {}
        device = step.early.device
        with torch.no_grad():
            log_softmax = _median_ms(lambda: torch.ops.aten._log_softmax.out(
                step.early, -1, False, out=self.kept[batch]), device)
            return {"math_ms": _median_ms(lambda: math(step), device),
                    "log_softmax_ms": log_softmax}
