"""How a CLI run uses the CPU: torch's thread count and the C allocator (recipe section `runtime`).

Threads. torch starts one thread per core. When other processes keep some cores busy, those
threads wait on each other: on a 2-core machine under load the quickstart took 1 min 54 s with
the default and 10 s with one thread. `threads: 0` (auto) takes OMP_NUM_THREADS when it is set,
else the CPUs this process may run on minus the 1-minute load average (rounded), at least 1.

Allocator. Every decoding step allocates the same large tensors (logits, early-exit logits and
their temporaries). glibc returns freed blocks above its trim threshold to the system and hands
out allocations above its mmap threshold as fresh pages, so each step pays page faults again:
~0.9 ms for a 2 MB tensor, ~27 ms for 64 MB. `allocator: reuse` raises both thresholds (mmap
32 MB, glibc's maximum; trim 256 MB), so those blocks are reused; `system` leaves glibc alone.
Elsewhere than glibc both mean the platform default.

Compile. `compile: true` runs SLED's and DoLa's per-block math through `torch.compile`
(`toolkit.decoding.blocks.use_compile`), eager if compiling fails, instead of their C kernels
(`toolkit.decoding.native`) on a CPU. Off by default: on a CPU the C kernels are faster than the
compiled blocks (docs/figures.md), and compiling took 3-75 s per function and shape, which short
runs never win back. On a GPU, where decoding waits on kernel launches, it turns a step's SLED
terms and cosines (or DoLa's JSD) into a few fused kernels; `benchmarks/gpu_check.sh` measures it.

Only the dataclass is imported eagerly, so validating a recipe does not pull in torch.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from toolkit.core.errors import check_choice, check_range

ALLOCATORS = ("reuse", "system")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 << 20, 256 << 20

_state: dict[str, str] = {}


@dataclass
class RuntimeConfig:
    """threads: torch's intra-op threads, 0 = auto; allocator: reuse | system; compile: compile
    SLED's and DoLa's per-block math (see the module docstring for each)."""

    threads: int = 0
    allocator: str = "reuse"
    compile: bool = False

    def __post_init__(self) -> None:
        check_range("runtime.threads", self.threads, low=0)
        check_choice("runtime.allocator", self.allocator, ALLOCATORS)


def auto_threads() -> tuple[int, str]:
    """(thread count, why) for threads=0."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env), "OMP_NUM_THREADS"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cpus, f"{cpus} CPUs"
    return max(1, min(cpus, round(cpus - load))), f"{cpus} CPUs, load {load:.1f}"


def _tune_allocator(allocator: str) -> str:
    if allocator == "system":
        return "system allocator"
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and libc.mallopt(
            _M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    except (OSError, AttributeError):
        ok = False
    return "allocator reuses freed blocks" if ok else "system allocator (no glibc mallopt)"


def configure(config: RuntimeConfig) -> str:
    """Apply `config` to this process; returns the line `describe()` gives from now on."""
    import torch

    if config.threads:
        threads, why = config.threads, "runtime.threads"
    else:
        threads, why = auto_threads()
        why = f"runtime.threads=0: {why}"
    torch.set_num_threads(threads)
    allocator = _tune_allocator(config.allocator)
    from toolkit.decoding.blocks import use_compile

    use_compile(config.compile)
    compiled = "; SLED/DoLa block math compiled (runtime.compile)" if config.compile else ""
    _state["line"] = f"torch threads: {torch.get_num_threads()} ({why}); {allocator}{compiled}"
    _state["allocator"] = allocator
    _state["allocator_name"] = config.allocator
    return _state["line"]


def describe() -> str | None:
    """The line of the last `configure` call (None when the process was not configured)."""
    return _state.get("line")


def allocator_name() -> str:
    """The `runtime.allocator` this process runs: the configured one, else `system` (nothing
    outside `configure` touches the allocator)."""
    return _state.get("allocator_name", "system")


def allocator() -> str:
    """How the allocator was set up ('not configured' outside a configured run)."""
    return _state.get("allocator", "not configured")
