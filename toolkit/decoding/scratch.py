"""Scratch tensors for the per-block passes of SLED and DoLa, kept per thread on CPU.

A block's temporaries (its softmax, differences, logs) are megabytes each: on SmolLM2 at batch
8 one row of N x V floats is 5.7 MB. Allocated afresh at every step, glibc returns each to the
system when it is freed (its trim threshold) and the next step page-faults the memory in again,
unless the process raised glibc's thresholds (`runtime.allocator: reuse`). Writing into tensors
kept here makes a step's speed the code's, whatever the process set. One buffer per name and
thread, grown to the largest block seen and held for the thread's life: at most one block per
name, six names (SLED three, DoLa three), e.g. 34 MB on SmolLM2 and 107 MB on Gemma 3 once
both methods ran. On other devices (whose allocators already cache) and while `torch.compile`
runs the blocks, a fresh tensor. The early-exit tap keeps its per-capture buffers in a
`Buffers` of its own.
"""

from __future__ import annotations

import math
import threading

import torch

from toolkit.decoding.blocks import compile_enabled

_kept = threading.local()


class Buffers:
    """Named tensors kept for reuse: each `get` is a view of the flat buffer kept under its name,
    grown to the largest request, so the next `get` of that name overwrites it."""

    def __init__(self) -> None:
        self._flat: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._flat)

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
        """An uninitialised contiguous tensor of `shape` in the buffer `name`."""
        size = math.prod(shape)
        flat = self._flat.get(name)
        if (flat is None or flat.dtype != dtype or flat.device != device or flat.numel() < size
                or (flat.is_inference() and not torch.is_inference_mode_enabled())):
            # a buffer made under torch.inference_mode (e.g. in vLLM's sampler) cannot be
            # written outside it
            flat = self._flat[name] = torch.empty(size, dtype=dtype, device=device)
        return flat[:size].view(shape)


def scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
    """An uninitialised contiguous tensor of `shape`; on CPU a view of this thread's buffer
    `name`, overwritten by the next call with that name."""
    if device.type != "cpu" or compile_enabled():
        return torch.empty(shape, dtype=dtype, device=device)
    buffers = getattr(_kept, "buffers", None)
    if buffers is None:
        buffers = _kept.buffers = Buffers()
    return buffers.get(name, shape, dtype, device)
