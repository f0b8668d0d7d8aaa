"""Timing and memory probes for one generate() call.

Time: a streamer stamps every step (transformers calls `put` with the prompt, then once per
new token, after the token is on the host), so one call gives both the time to the first token
(prefill) and the per-token time of the rest (decode). On CUDA each stamp synchronises first.
Each stamp also reads the process's CPU time, so decode has a CPU-time twin: on a shared machine
the time this process was not running drops out of it.

Peak memory: CUDA `max_memory_allocated` above what was allocated before the call; on CPU the
process's peak resident set (VmHWM) above its RSS before the call, the peak being reset through
`/proc/self/clear_refs` (Linux) after freed heap memory is handed back (glibc `malloc_trim`, as
the toolkit's allocator set-up otherwise keeps it); where that is not possible, the growth of
`ru_maxrss`, a lifetime high-water mark that only shows growth above the earlier peak.
"""

from __future__ import annotations

import contextlib
import ctypes
import resource
import time
from pathlib import Path

import torch
from transformers import LogitsProcessor
from transformers.generation.streamers import BaseStreamer


class StepTimer(BaseStreamer):
    """Records a perf_counter stamp at every `put` (prompt first, then each step)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.stamps: list[float] = []
        self.cpu_stamps: list[float] = []

    def put(self, value) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())

    def end(self) -> None:
        """Nothing to flush."""

    def timings(self, start: float) -> tuple[float, float, int]:
        """(prefill ms, decode ms per token, new tokens) of a call that began at `start`."""
        steps = self.stamps[1:]
        if len(steps) < 2:
            raise RuntimeError("the benchmark needs at least two generated tokens per call")
        prefill = (steps[0] - start) * 1e3
        decode = (steps[-1] - steps[0]) * 1e3 / (len(steps) - 1)
        return prefill, decode, len(steps)

    def decode_cpu_ms(self) -> float:
        """The process's CPU time per decoded token (ms), as `timings`' decode."""
        steps = self.cpu_stamps[1:]
        return (steps[-1] - steps[0]) * 1e3 / (len(steps) - 1)


class FloorProcessor(LogitsProcessor):
    """Runs the tap's early-exit projection (all candidate layers) and discards it.

    Added to greedy decoding this is the compute floor of SLED and DoLa: the extra lm_head
    matmul of the N candidate rows, without any of their own arithmetic.
    """

    def __init__(self, tap):
        self.tap = tap

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        self.tap.early_logits(reuse=True)
        return scores


_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the system (glibc malloc_trim), so the RSS growth of the
    next call is its own peak, also when the allocator keeps freed blocks (`runtime.allocator`)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class PeakMemory:
    """Peak memory of a block above its starting point, in bytes (see module docstring)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.method = self._pick_method()
        self.base = 0

    def _pick_method(self) -> str:
        if self.cuda:
            return "cuda max_memory_allocated delta"
        try:
            _CLEAR_REFS.write_text("5")
            _status_kb("VmHWM")
            return "cpu peak RSS delta (VmHWM reset via /proc/self/clear_refs)"
        except OSError:
            return "cpu ru_maxrss delta (lifetime high-water mark: growth above earlier peak)"

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.method.startswith("cpu peak RSS"):
            _release_freed_memory()
            _CLEAR_REFS.write_text("5")
            self.base = _status_kb("VmRSS") * 1024
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def stop(self) -> int:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method.startswith("cpu peak RSS"):
            peak = _status_kb("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(0, peak - self.base)
