"""SLED's and DoLa's per-step cost over the compute floor, and their math against log_softmax.

    OMP_NUM_THREADS=1 python3 benchmarks/decoding_math_speed.py [--batches 1,8,32]
        [--repeats 5] [--shape llama-d512] [--compile] [--out bench_results/decoding_math_speed]

Through the Python API (`run_bench`, i.e. `AugmentedModel.generate`; no `runtime.configure`, so
the process's allocator is left as a Python caller has it), ONE torch thread: a random-weight
Llama of the shape (llama-d512: d=512, 16 layers, V=32000), every layer a candidate (N=16), an
adaptive head at token level (the default 2048 wide). Modes: greedy, the floor (greedy + the
lm_head projection of the N early rows), SLED K=50, DoLa, and composed (SLED K=50 + top-n-sigma
+ adaptive temperature, sampling). Each is decoded 16 new tokens after a 32-token prompt, the
modes interleaved round-robin (the order rotating by one per repeat), median of `--repeats`
after one warm-up round. Beside each round the mode's math is timed on one captured step of
that batch, against one log_softmax over the same early logits. Every sample records the load
average. Prints the bench's table and a summary (ms per step, ratios to the floor, math over
log_softmax, the goals); bench.json in --out has every sample.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from toolkit.bench import BenchConfig, random_model, run_bench
from toolkit.core.options import GraftConfig, HeadConfig
from toolkit.decoding.blocks import use_compile
from toolkit.graft import AugmentedModel

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
    parser.add_argument("--out", type=Path, default=Path("bench_results/decoding_math_speed"))
    return parser.parse_args()


def summary(result: dict) -> str:
    """Per batch: ms per step of every mode, each method's ratio to the floor (goal in
    brackets) and its math over one log_softmax."""
    rows = {(r["batch"], r["mode"]): r for r in result["rows"]}
    batches = sorted({b for b, _ in rows})
    lines = ["| batch | " + " | ".join(f"{label} ms" for label in MODES.values())
             + " | " + " | ".join(f"{MODES[m]} vs floor (goal {g:.2f}x)" for m, g in GOALS.items())
             + " | " + " | ".join(f"{MODES[m]} math / log_softmax" for m in GOALS)
             + " | log_softmax ms | load average |",
             "|---:|" + "---:|" * (len(MODES) + 2 * len(GOALS) + 2)]
    for b in batches:
        cells = [f"{rows[b, m]['decode_ms_per_token']:.1f}" for m in MODES]
        cells += [f"{rows[b, m]['ratio_to_floor']:.2f}x" for m in GOALS]
        cells += [f"{rows[b, m]['math_vs_log_softmax']:.2f}x" for m in GOALS]
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
    result = run_bench(am, config, decoding)
    print(f"\n{args.shape}, N={len(am.tap.candidate_layers)} candidate layers, "
          f"{torch.get_num_threads()} torch thread(s), "
          f"compile {'on' if args.compile else 'off'}; ms per step (median of {args.repeats})\n")
    print(summary(result))


if __name__ == "__main__":
    main()
