"""SLED's and DoLa's per-step cost over the compute floor, and their math against log_softmax.

    OMP_NUM_THREADS=1 python3 benchmarks/decoding_math_speed.py [--batches 1,8,32]
        [--repeats 5] [--shape llama-d512] [--compile | --paths]
        [--out bench_results/decoding_math_speed]

Through the Python API (`run_bench`, i.e. `AugmentedModel.generate`; no `runtime.configure`, so
the process's allocator is left as a Python caller has it), ONE torch thread: a random-weight
Llama of the shape (llama-d512: d=512, 16 layers, V=32000), every layer a candidate (N=16), an
adaptive head at token level (the default 2048 wide). Modes: greedy, the floor (greedy + the
lm_head projection of the N early rows), SLED K=50, DoLa, and composed (SLED K=50 + top-n-sigma
+ adaptive temperature, sampling). Each is decoded 16 new tokens after a 32-token prompt, the
modes interleaved round-robin (the order rotating by one per repeat), median of `--repeats`
after one warm-up round. Beside each round the mode's math is timed on one captured step of
that batch, against one log_softmax over the same early logits (both in CPU time, see
`toolkit.bench.math_speed`). Every sample records the load
average. Prints the bench's table and a summary (ms per step, ratios to the floor in wall and
in CPU time, math over log_softmax, the goals); bench.json in --out has every sample.

`--paths` times only the math, on one captured step per batch: SLED's and DoLa's per-step
functions on the C kernels (`toolkit.decoding.native`), on torch ops, and on torch ops through
torch.compile (`runtime.compile`), against one log_softmax, round-robin, median of --repeats
rounds (each the median of 3 calls, in CPU time); also the seconds torch.compile took at its
first calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from toolkit.bench import BenchConfig, run_bench
from toolkit.bench.math_speed import capture_step, step_math
from toolkit.bench.rounds import bench_decoding, prompts
from toolkit.decoding.blocks import use_compile
from toolkit.decoding.native import status, use_native
from toolkit.graft import AugmentedModel
from toolkit.methods.options import GraftConfig, HeadConfig
from toolkit.testing import random_model

MODES = {"greedy": "greedy", "floor": "floor", "sled_k50": "SLED K=50", "dola": "DoLa",
         "composed": "composed"}
GOALS = {"sled_k50": 1.10, "dola": 1.10, "composed": 1.15}
MATH_GOAL = 2.0


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", default="llama-d512")
    parser.add_argument("--compile", action="store_true",
                        help="run SLED's and DoLa's block math through torch.compile")
    parser.add_argument("--paths", action="store_true",
                        help="time the math alone on the C kernels, torch ops and torch.compile")
    parser.add_argument("--out", type=Path, default=Path("bench_results/decoding_math_speed"))
    return parser.parse_args()


PATHS = {"C kernels": (True, False), "torch ops": (False, False), "torch.compile": (False, True)}


def _use(path: str) -> None:
    use_native(PATHS[path][0])
    use_compile(PATHS[path][1])


def _ms(fn) -> float:
    """Median CPU time of 3 calls, in ms (as the bench's math column)."""
    times = []
    for _ in range(3):
        start = time.thread_time()
        fn()
        times.append((time.thread_time() - start) * 1e3)
    return statistics.median(times)


def _paths_row(maths: dict, step, repeats: int) -> tuple[dict, float]:
    """Median ms of one log_softmax and of each method's math on each path, round-robin, and
    the seconds of torch.compile's first calls."""
    kept = torch.empty_like(step.early)
    runs = {("log_softmax", "C kernels"): lambda: torch.ops.aten._log_softmax.out(
        step.early, -1, False, out=kept)}
    runs |= {(m, p): (lambda fn=fn: fn.run(step)) for m, fn in maths.items() for p in PATHS}
    first = 0.0
    for (_, path), run in runs.items():  # warm-up: torch.compile compiles here
        _use(path)
        start = time.perf_counter()
        run()
        first += time.perf_counter() - start if path == "torch.compile" else 0.0
    times: dict = {key: [] for key in runs}
    order = list(runs)
    for r in range(repeats):
        for key in order[r % len(order):] + order[: r % len(order)]:
            _use(key[1])
            times[key].append(_ms(runs[key]))
    return {key: statistics.median(v) for key, v in times.items()}, first


def compare_paths(am, config: BenchConfig, decoding, repeats: int) -> None:
    """Print the math-only table of `--paths` (see the module docstring), row by row."""
    lines = ["| batch | log_softmax ms | " + " | ".join(
        f"{MODES[m]} {p} ms (x log_softmax)" for m in ("sled_k50", "dola") for p in PATHS)
        + " | torch.compile first calls s |", "|---:|" + "---:|" * (2 * len(PATHS) + 2)]
    print("\n".join(lines), flush=True)
    maths = {m: step_math(am, bench_decoding(m, config, decoding)) for m in ("sled_k50", "dola")}
    for b, ids in prompts(am, config, am.base.device).items():
        med, first = _paths_row(maths, capture_step(am, ids), repeats)
        base = med[("log_softmax", "C kernels")]
        cells = [f"{med[(m, p)]:.2f} ({med[(m, p)] / base:.2f}x)" for m in maths for p in PATHS]
        print(f"| {b} | {base:.2f} | " + " | ".join(cells) + f" | {first:.1f} |", flush=True)
    _use("C kernels")


def summary(result: dict) -> str:
    """Per batch: ms per step of every mode, each method's ratio to the floor (goal in brackets)
    in wall and in CPU time, and its math over one log_softmax."""
    rows = {(r["batch"], r["mode"]): r for r in result["rows"]}
    batches = sorted({b for b, _ in rows})
    lines = ["| batch | " + " | ".join(f"{label} ms" for label in MODES.values())
             + " | " + " | ".join(f"{MODES[m]} vs floor (goal {g:.2f}x)" for m, g in GOALS.items())
             + " | " + " | ".join(f"{MODES[m]} vs floor, CPU time" for m in GOALS)
             + " | " + " | ".join(f"{MODES[m]} math / log_softmax" for m in GOALS)
             + " | log_softmax ms | load average |",
             "|---:|" + "---:|" * (len(MODES) + 3 * len(GOALS) + 2)]
    for b in batches:
        cells = [f"{rows[b, m]['decode_ms_per_token']:.1f}" for m in MODES]
        cells += [f"{rows[b, m][key]:.2f}x" for key in ("ratio_to_floor", "cpu_ratio_to_floor",
                                                          "math_vs_log_softmax") for m in GOALS]
        cells.append(f"{rows[b, 'sled_k50']['log_softmax_ms']:.2f}")
        loads = [rows[b, m]["load_1m"] for m in MODES]
        cells.append(f"{min(loads):.2f}-{max(loads):.2f}")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    use_compile(args.compile)
    am = AugmentedModel.graft(random_model(args.shape, seed=0),
                              GraftConfig(layers="all", head=HeadConfig(level="token")))
    decoding = am.decoding
    decoding = dataclasses.replace(
        decoding, sled=dataclasses.replace(decoding.sled, evolution_scale=50))
    config = BenchConfig(batch_sizes=[int(b) for b in args.batches.split(",")], prompt_len=32,
                         new_tokens=16, repeats=args.repeats, warmup=1,
                         modes=["greedy", "floor", "sled", "dola", "composed"], sled_ks=[50],
                         output_dir=str(args.out), plot=False)
    setting = (f"{args.shape}, N={len(am.tap.candidate_layers)} candidate layers, "
               f"{torch.get_num_threads()} torch thread(s)")
    if args.paths:
        print(f"{setting}; math alone on one captured step, median of {args.repeats} rounds\n")
        compare_paths(am, config, decoding, args.repeats)
        return
    result = run_bench(am, config, decoding)
    print(f"\n{setting}, compile {'on' if args.compile else 'off'}, {status()}; "
          f"ms per step (median of {args.repeats})\n")
    print(summary(result))


if __name__ == "__main__":
    main()
