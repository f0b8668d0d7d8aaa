"""Row blocks for the (B, N, V) passes of SLED and DoLa, and their optional torch.compile.

Each block of rows goes through all of its passes (softmax, differences, reductions) before the
next one starts, so the block's temporaries stay in the CPU cache and are reused from the
allocator instead of being fresh (page-faulting) allocations of B * N * V floats; the extra
memory of a call is O(block) on top of its inputs.

`use_compile(True)` runs the per-block functions through `torch.compile` (fusing a block's
passes into fewer loops). It is off by default: compiling costs tens of seconds per block shape
and process, which short runs never win back. If compiling fails (no C++ compiler, an
unsupported backend) the functions run eagerly from then on, with one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

BLOCK_ELEMENTS = 1 << 19

_compile = {"enabled": False}
_compiled: dict[Callable, Callable] = {}


def row_blocks(rows: int, per_row: int, block: int = BLOCK_ELEMENTS) -> list[slice]:
    """Slices covering range(rows), each of at most max(1, block // per_row) rows."""
    step = max(1, block // max(per_row, 1))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def batch_blocks(batch: int, early: torch.Tensor) -> list[slice]:
    """Slices covering range(batch), batch rows of `early`'s (.., N, V) shape as the torch ops
    take them at a time: BLOCK_ELEMENTS on a CPU, all of them on other devices."""
    per_row = early.shape[-2] * early.shape[-1]
    return row_blocks(batch, per_row, BLOCK_ELEMENTS if early.device.type == "cpu"
                      else batch * per_row)


def use_compile(enabled: bool) -> None:
    """Compile the per-block functions of SLED and DoLa from now on (or stop doing so)."""
    _compile["enabled"] = bool(enabled)


def compile_enabled() -> bool:
    return _compile["enabled"]


def kernel(fn: Callable) -> Callable:
    """`fn`, or its compiled version while `use_compile(True)` is in effect."""
    if not _compile["enabled"]:
        return fn
    if fn not in _compiled:
        _compiled[fn] = _with_eager_fallback(fn, torch.compile(fn, dynamic=False))
    return _compiled[fn]


def _with_eager_fallback(fn: Callable, compiled: Callable) -> Callable:
    failed: list[BaseException] = []

    def run(*args, **kwargs):
        if not failed:
            try:
                return compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compile failure means: run eagerly
                failed.append(err)
                warnings.warn(f"torch.compile of {fn.__name__} failed ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); running it "
                              "eagerly", RuntimeWarning, stacklevel=2)
        return fn(*args, **kwargs)

    return run
