"""C kernels for SLED's and DoLa's passes over the early logits on a CPU (`native.c`).

They take one row (one layer of one batch entry, V logits) at a time: its max, its exponentials
into a row of scratch that stays in the CPU cache, then every sum the method needs in one more
pass (and SLED's K cosines from them). So each early logit is read from memory once and
exponentiated once; the torch ops of `toolkit.decoding.sled` / `dola` take 6 to 11 passes over
every block of them. DoLa's output, the final log-probabilities minus the chosen layer's with
the relative-top filter, is one more pass per batch row (`dola_finish`). The sums are in double
across blocks of 256 entries, so they are closer to exact than the torch ops' float32
reductions.

The kernels are built with the C compiler (`$CC`, else `cc`) at the first call that needs them
in a process, into `$SURGERY_CACHE/native/` (default ~/.cache/model-surgery/native/), one file
per source, compiler and flags, which later processes load; nothing is written elsewhere.
Without a compiler, or when building or loading fails (a cache folder that cannot be written
included), SLED and DoLa run on torch ops, with the same results within float32 rounding;
`status()` says which runs and why. `use_native(False)` turns the kernels off (to time the torch
ops), and so does `runtime.compile` (`toolkit.decoding.blocks.use_compile`), whose compiled torch
ops run instead. Rows are split over torch's intra-op threads (ctypes releases the GIL).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from toolkit.decoding.blocks import compile_enabled
from toolkit.decoding.scratch import scratch

SOURCE = Path(__file__).with_name("native.c")
_P, _I = ctypes.c_void_p, ctypes.c_int64
# native.c's functions: inputs, (first row, end row, layers, V[, K]), scratch and outputs
_SIGNATURES = {"sled_rows": [_P] * 3 + [_I] * 5 + [_P] * 3,
               "dola_rows": [_P] * 3 + [_I] * 4 + [_P] * 2,
               "dola_finish_rows": [_P] * 5 + [_I] * 4 + [_P] * 2}
_lock = threading.Lock()
_state: dict = {"enabled": True, "library": None, "status": "C kernels not built yet",
                "pool": None}


def use_native(enabled: bool) -> None:
    """Run SLED's and DoLa's CPU math on the C kernels when they build (default), or not."""
    _state["enabled"] = bool(enabled)


def status() -> str:
    """One line: whether SLED's and DoLa's CPU math runs on the C kernels, and why not."""
    if compile_enabled():
        return "SLED/DoLa CPU math: torch ops through torch.compile (runtime.compile)"
    if not _state["enabled"]:
        return "SLED/DoLa CPU math: torch ops (C kernels turned off)"
    _library()
    return f"SLED/DoLa CPU math: {_state['status']}"


def available() -> bool:
    """Whether the C kernels are built and loaded (building them at the first call)."""
    return _library() is not None


def runs_on(early: torch.Tensor) -> bool:
    """Whether the kernels take these early logits: a CPU tensor, kernels on and built, and
    `runtime.compile` off."""
    return (early.device.type == "cpu" and _state["enabled"] and not compile_enabled()
            and available())


def sled_cosines(early: torch.Tensor, z_low: torch.Tensor,
                 topk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SLED's cosines (B, N, K) float64 and per-layer sums (B, N, 4) float64 (R, Q, W and
    (D/2)^2 summed; see `native.c`) from early (B, N, V), the final logits z_low (B, V) with
    -inf read as the lowest float, and topk (B, K)."""
    early, z_low = _floats(early), _floats(z_low)
    topk = topk.to(torch.int64).contiguous()
    (batch, layers, vocab), k = early.shape, topk.shape[-1]
    sums = torch.empty(batch, layers, 4, dtype=torch.float64)
    cos = torch.empty(batch, layers, k, dtype=torch.float64)
    _rows(_library().sled_rows, (early, z_low, topk), batch * layers, layers, vocab, (k,),
          (sums, cos))
    return cos, sums


def dola_divergences(early: torch.Tensor, log_final: torch.Tensor,
                     final_probs: torch.Tensor) -> torch.Tensor:
    """DoLa's Jensen-Shannon score of each layer (B, N) float64 from early (B, N, V) and the final
    layer's log-probabilities and probabilities (B, V)."""
    early, log_final, final_probs = _floats(early), _floats(log_final), _floats(final_probs)
    batch, layers, vocab = early.shape
    jsd = torch.empty(batch, layers, dtype=torch.float64)
    _rows(_library().dola_rows, (early, log_final, final_probs), batch * layers, layers, vocab,
          (), (jsd,))
    return jsd


def dola_finish(early: torch.Tensor, final_logits: torch.Tensor, log_final: torch.Tensor,
                chosen: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """DoLa's output (B, V) float32 from early (B, N, V), the final logits and their
    log-probabilities (B, V), the chosen layer (B,) and the relative-top threshold on log_final
    (B,): log_final - log_softmax of the chosen layer, capped at the largest float, -inf where
    log_final is below the threshold or the final logit is -inf (see `native.c`)."""
    early, z, log_final = _floats(early), _floats(final_logits), _floats(log_final)
    batch, layers, vocab = early.shape
    out = torch.empty(batch, vocab, dtype=torch.float32)
    _rows(_library().dola_finish_rows, (early, z, log_final, chosen.to(torch.int64).contiguous(),
                                        _floats(threshold)), batch, layers, vocab, (), (out,))
    return out


def _floats(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).contiguous()


def _rows(fn, inputs, rows: int, layers: int, vocab: int, sizes, outputs) -> None:
    """fn over rows [0, rows), split into one range per torch thread, each with its own row of
    scratch."""
    threads = max(1, min(torch.get_num_threads(), rows))
    rows_scratch = scratch("native.rows", (threads, vocab), torch.float32, torch.device("cpu"))
    bounds = [rows * i // threads for i in range(threads + 1)]
    pointers = [t.data_ptr() for t in inputs]

    def run(i: int) -> None:
        fn(*pointers, bounds[i], bounds[i + 1], layers, vocab, *sizes,
           rows_scratch[i].data_ptr(), *(t.data_ptr() for t in outputs))

    if threads == 1:
        run(0)
        return
    if _state["pool"] is None or _state["pool"][0] != threads:
        if _state["pool"] is not None:
            _state["pool"][1].shutdown(wait=False)
        _state["pool"] = (threads, ThreadPoolExecutor(threads, thread_name_prefix="native-rows"))
    list(_state["pool"][1].map(run, range(threads)))


def _library() -> ctypes.CDLL | None:
    if _state["library"] is None:
        with _lock:
            if _state["library"] is None:
                _state["library"], _state["status"] = _load()
    return _state["library"] or None


def _flags() -> list[str]:
    flags = ["-O3", "-shared", "-fPIC", "-fopenmp-simd", "-fno-trapping-math", "-fno-math-errno"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def _cache_dir() -> Path:
    root = os.environ.get("SURGERY_CACHE") or Path.home() / ".cache" / "model-surgery"
    return Path(root) / "native"


def _load() -> tuple[ctypes.CDLL | bool, str]:
    """(the built library, its status line), or (False, why the torch ops run). Nothing is
    written outside `_cache_dir()`."""
    name = os.environ.get("CC") or "cc"
    compiler = shutil.which(name)
    if compiler is None:
        return False, f"torch ops (no C compiler: {name!r} is not on PATH)"
    try:
        path = _built_path(_cache_dir(), compiler)
        if not path.exists():
            _build(compiler, path)
        try:
            library = ctypes.CDLL(str(path))
        except OSError:  # a broken file where the build should be: build it again
            _build(compiler, path)
            library = ctypes.CDLL(str(path))
        for function, argtypes in _SIGNATURES.items():
            getattr(library, function).argtypes = argtypes
    except (OSError, subprocess.SubprocessError) as err:
        why = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        return False, f"torch ops (building the C kernels failed: {why})"
    return library, f"C kernels ({Path(compiler).name}, {path})"


def _built_path(folder: Path, compiler: str) -> Path:
    """Where the build of this source with this compiler and these flags lives in `folder`."""
    stat = os.stat(compiler)
    key = hashlib.sha256(repr((SOURCE.read_bytes(), compiler, stat.st_size, stat.st_mtime_ns,
                               _flags(), platform.machine())).encode()).hexdigest()[:16]
    return folder / f"native-{key}.so"


def _build(compiler: str, path: Path) -> None:
    """Compile SOURCE into `path` (through a temporary file, so no reader sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        built = Path(tmp) / path.name
        done = subprocess.run([compiler, *_flags(), str(SOURCE), "-o", str(built), "-lm"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise OSError(f"{Path(compiler).name} exited with {done.returncode}: "
                          f"{(done.stderr or done.stdout).strip()}")
        os.replace(built, path)
