"""`run_bench(model, config)`: every decoding mode timed side by side in one run.

Modes go through `AugmentedModel.generate`, except the compute floor, which is greedy decoding
of the base model's `generate()` under the tap with a `FloorProcessor` (the extra lm_head
projection of the candidate layers, discarded). Rounds are interleaved: every repeat runs each
(batch size, mode) once, the mode order rotated by one per repeat, so slow drifts of a shared
machine hit every mode alike; medians over repeats are reported. Every sample records the
1-minute load average. Beside each round of a mode with decoding math, that math is timed on
one captured step of the same batch against one log_softmax over its early logits
(`toolkit.bench.math_speed`), in this process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from toolkit.bench.config import FILES, KEY, SAMPLE, BenchConfig
from toolkit.bench.eval_speed import run_eval_bench
from toolkit.bench.math_speed import MathTimer
from toolkit.bench.measure import PeakMemory
from toolkit.bench.rounds import bench_decoding, measure, prompts
from toolkit.bench.table import markdown_table, plot, plot_available
from toolkit.bench.worker import Worker
from toolkit.core import runtime
from toolkit.core.errors import ConfigError
from toolkit.decoding import native
from toolkit.io import reports
from toolkit.methods.options import DecodingConfig


def _schedule(config: BenchConfig, names: list[str]) -> list[tuple[int, int, str]]:
    """(repeat, batch, mode) in run order; negative repeats are the untimed warm-up."""
    order = []
    for r in range(-config.warmup, config.repeats):
        for b in config.batch_sizes:
            shift = r % len(names)
            order += [(r, b, m) for m in names[shift:] + names[:shift]]
    return order


def _math_columns(samples: list[dict[str, float]]) -> dict[str, float]:
    """Median math ms, log_softmax ms and their ratio over a mode's math samples ({} if none)."""
    timed = [s for s in samples if "math_ms" in s]
    if not timed:
        return {}
    math = statistics.median(s["math_ms"] for s in timed)
    log_softmax = statistics.median(s["log_softmax_ms"] for s in timed)
    return {"math_ms": math, "log_softmax_ms": log_softmax,
            "math_vs_log_softmax": math / log_softmax}


def _summarise(samples: dict, config: BenchConfig, names: list[str],
               math: dict | None = None) -> list[dict[str, Any]]:
    rows = []
    for b in config.batch_sizes:
        med = {m: {k: statistics.median(s[k] for s in samples[(b, m)])
                   for k in ("prefill_ms", "decode_ms_per_token", "new_tokens",
                             "decode_cpu_ms_per_token")}
               for m in names}
        peak = {m: max(s["peak_bytes"] for s in samples[(b, m)]) / 2**20 for m in names}
        for m in names:
            decode = med[m]["decode_ms_per_token"]
            row = {
                "mode": m, "batch": b, "prefill_ms": med[m]["prefill_ms"],
                "decode_ms_per_token": decode, "tokens_per_s": b * 1e3 / decode,
                "new_tokens": med[m]["new_tokens"],
                "ratio_to_greedy": decode / med["greedy"]["decode_ms_per_token"],
                "ratio_to_floor": decode / med["floor"]["decode_ms_per_token"],
                "decode_cpu_ms_per_token": med[m]["decode_cpu_ms_per_token"],
                "cpu_ratio_to_floor": (med[m]["decode_cpu_ms_per_token"]
                                       / med["floor"]["decode_cpu_ms_per_token"]),
                "peak_mb": peak[m], "peak_over_greedy_mb": peak[m] - peak["greedy"],
                "load_1m": statistics.median(s.get("load_1m", 0.0) for s in samples[(b, m)]),
            }
            if SAMPLE in med:
                row["ratio_to_sample"] = decode / med[SAMPLE]["decode_ms_per_token"]
            row.update(_math_columns((math or {}).get((b, m), [])))
            rows.append(row)
    return rows


def _model_info(am: Any) -> dict[str, Any]:
    cfg = am.base.config.get_text_config()
    return {"model_type": cfg.model_type, "hidden_size": cfg.hidden_size,
            "num_layers": cfg.num_hidden_layers, "vocab_size": am.vocab_size,
            "candidate_layers": len(am.tap.candidate_layers), "dtype": str(am.base.dtype),
            "device": str(am.base.device)}


def run_bench(model: Any, config: BenchConfig, decoding: DecodingConfig | None = None,
              second_process: Callable[[str], list[str]] | None = None) -> dict[str, Any]:
    """Time every mode of `config` on `model` side by side; write JSON, table and plot.

    Args:
        model: an AugmentedModel.
        config: batch sizes, lengths, repeats, modes, SLED's K sweep, allocators, output folder.
        decoding: the methods' settings (the recipe's `decoding` section; default: the
            model's own `model.decoding`).
        second_process: allocator -> the command line of a process that loads the same model
            under that `runtime.allocator` and `serve`s rounds (`toolkit.bench.worker`); needed
            only when `config.allocators` names one other than this process's (`cli.py bench`
            gives it).

    Returns:
        The results (also in `config.output_dir/bench.json`): config, model, rows (median
        timings and ratios per allocator, batch size and mode), schedule, samples, files.
    """
    if not all(hasattr(model, a) for a in ("base", "tap", "generate", "check_decoding")):
        raise ConfigError(f"run_bench needs an AugmentedModel (got {type(model).__name__}); "
                          "graft the base model first with AugmentedModel.graft(model)")
    reports.check(Path(config.output_dir), FILES, KEY)
    here = runtime.allocator_name()
    allocators = list(config.allocators) or [here]
    if second_process is None and set(allocators) - {here}:
        raise ConfigError(f"bench.allocators={allocators} measures runtime.allocator other than "
                          f"this process's ({here}) in a second process; run it through cli.py "
                          "bench, or pass second_process= to run_bench")
    names = config.mode_names()
    decoding = decoding or model.decoding
    decodings = {m: bench_decoding(m, config, decoding) for m in names}
    for options in decodings.values():
        model.check_decoding(options)
    device = model.base.device
    ids = prompts(model, config, device)
    timer = MathTimer(model, ids, decodings)
    memory = PeakMemory(device)
    schedule = _schedule(config, names)
    samples: dict[tuple[str, int, str], list[dict[str, float]]] = {
        (a, b, m): [] for a in allocators for b in config.batch_sizes for m in names}
    math: dict[tuple[int, str], list[dict[str, float]]] = {
        (b, m): [] for b in config.batch_sizes for m in names}
    with contextlib.ExitStack() as stack:
        workers = {a: stack.enter_context(Worker(second_process(a), a))
                   for a in allocators if a != here}
        for r, b, m in tqdm(schedule, desc="bench", disable=not config.progress):
            for a in allocators[r % len(allocators):] + allocators[: r % len(allocators)]:
                sample = (measure(model, m, decodings[m], ids[b], memory) if a == here
                          else workers[a].measure(b, m))
                if r >= 0:
                    samples[(a, b, m)].append(sample)
            if r >= 0:
                math[(b, m)].append(timer.sample(b, m))
    rows = _by_allocator(samples, config, names, allocators, math)
    result = {
        "config": dataclasses.asdict(config), "model": _model_info(model),
        "torch_threads": torch.get_num_threads(), "allocator": _allocator_line(allocators),
        "decoding_math": native.status(),
        "memory_method": memory.method, "rows": rows,
        "schedule": [{"repeat": r, "batch": b, "mode": m} for r, b, m in schedule],
        "samples": [{"allocator": a, "batch": b, "mode": m, **s}
                    for (a, b, m), ss in samples.items() for s in ss],
        "math_samples": [{"batch": b, "mode": m, **s}
                         for (b, m), ss in math.items() for s in ss if s],
    }
    if config.eval_questions:
        result["eval_rows"] = run_eval_bench(model, config, decoding)
    _write(result, config)
    return result


def _by_allocator(samples: dict, config: BenchConfig, names: list[str],
                  allocators: list[str], math: dict) -> list[dict[str, Any]]:
    """`_summarise` per allocator; with several, each row names its allocator and its decode
    time over the first allocator's (`ratio_to_allocator`), rows of one mode side by side."""
    summaries = {a: _summarise({(b, m): samples[(a, b, m)] for b in config.batch_sizes
                                for m in names}, config, names, math) for a in allocators}
    if len(allocators) == 1:
        return summaries[allocators[0]]
    first = {(r["batch"], r["mode"]): r["decode_ms_per_token"] for r in summaries[allocators[0]]}
    rows = [{**r, "allocator": a,
             "ratio_to_allocator": r["decode_ms_per_token"] / first[(r["batch"], r["mode"])]}
            for a in allocators for r in summaries[a]]
    return sorted(rows, key=lambda r: (config.batch_sizes.index(r["batch"]),
                                       names.index(r["mode"]), allocators.index(r["allocator"])))


def _allocator_line(allocators: list[str]) -> str:
    here = runtime.allocator_name()
    if allocators == [here]:
        return runtime.allocator()
    said = {a: f"this process: {runtime.allocator()}" if a == here else "a second process"
            for a in allocators}
    return "allocators side by side: " + ", ".join(f"{a} ({said[a]})" for a in allocators)


def _write(result: dict[str, Any], config: BenchConfig) -> None:
    """bench.md, bench.json (+ bench.png), as reports this toolkit owns (`toolkit.io.reports`)."""
    out = Path(config.output_dir)
    reports.check(out, FILES, KEY)
    table = markdown_table(result)
    print(table)
    result["files"] = [str(out / "bench.json"), str(out / "bench.md")]
    if config.plot:
        png = None
        if plot_available():
            png = reports.write(out, "bench.png", KEY, lambda tmp: plot(result, tmp))
        result["plot_note"] = f"plot: {png}" if png else (
            "no plot: matplotlib is not installed (`pip install matplotlib` for bench.png)")
        if png:
            result["files"].append(str(png))
    reports.write_text(out, "bench.md", KEY, table + "\n" + result.get("plot_note", "") + "\n")
    reports.write_text(out, "bench.json", KEY, json.dumps(result, indent=1))
