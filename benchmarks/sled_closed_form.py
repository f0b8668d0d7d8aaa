"""Time SLED's closed-form cosine against the literal (N, K, V) formulation.

    OMP_NUM_THREADS=1 python benchmarks/sled_closed_form.py [--repeats 7] [--out PATH]

Defaults: B=1, N=32, K=50, V=32000, float32 on CPU. The two are run alternately (their order
swapped every repeat) so load on a shared machine hits both alike; the table gives medians and
the ratio naive / closed form, and the JSON file holds every timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from toolkit.decoding import sled_evolve
from toolkit.decoding.reference import sled_evolve_naive


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--scale", type=int, default=50, help="evolution_scale K")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench_results/sled_closed_form.json"))
    return parser.parse_args()


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    args = _parse()
    gen = torch.Generator().manual_seed(args.seed)
    final = torch.randn(args.batch, args.vocab, generator=gen) * 4
    early = final.unsqueeze(1) + torch.randn(args.batch, args.layers, args.vocab, generator=gen) * 2
    kw = dict(evolution_rate=2.0, evolution_scale=args.scale)
    runs = {
        "closed_form": lambda: sled_evolve(final, early, **kw),
        "naive_NKV": lambda: sled_evolve_naive(final, early, **kw),
    }
    max_diff = (runs["closed_form"]() - runs["naive_NKV"]()).abs().max().item()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.repeats):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(_time(runs[name]))
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["naive_NKV"] / medians["closed_form"]
    shape = f"B={args.batch} N={args.layers} K={args.scale} V={args.vocab}"
    print(f"SLED cosine, {shape}, float32 CPU, {torch.get_num_threads()} thread(s)")
    print(f"{'method':<12} {'median ms':>10} {'min ms':>10}")
    for name, t in times.items():
        print(f"{name:<12} {medians[name] * 1e3:>10.2f} {min(t) * 1e3:>10.2f}")
    print(f"ratio naive / closed form: {ratio:.1f}x   max |difference|: {max_diff:.2e}")
    result = {
        "shape": vars(args) | {"out": str(args.out)},
        "dtype": "float32",
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "seconds": times,
        "median_seconds": medians,
        "ratio_naive_over_closed": ratio,
        "max_abs_difference": max_diff,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
