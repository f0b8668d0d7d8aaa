"""TruthfulQA multiple-choice scoring throughput with and without the shared prefix.

Loads a recipe's model once and scores the first `--questions` questions of a TruthfulQA CSV
in each scoring mode (`--modes`, default every one: greedy, then each registered method that
scores) twice: with `eval.shared_prefix` (each question's prompt runs once into
a KV cache, then only its answers) and without it (every answer reruns the whole prompt). The
runs take turns block by block (`--block` questions, the order rotating), so a change in
the machine's load hits them alike. Prints a table (questions/s, speed-up, largest score
difference between the two paths) and writes it as JSON.

    OMP_NUM_THREADS=1 python3 benchmarks/truthfulqa_speed.py recipes/sled_smollm2.yaml \
        --data /path/to/TruthfulQA.csv --questions 100 --out bench_results/truthfulqa_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from toolkit import methods
from toolkit.core import runtime
from toolkit.core.errors import ToolkitError
from toolkit.eval import truthfulqa
from toolkit.eval.data import BadRows
from toolkit.eval.scoring import encode_pair, score_encoded
from toolkit.methods.options import apply_preset
from toolkit.recipes.load import load_recipe
from toolkit.recipes.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--data", required=True, help="a CSV in the TruthfulQA columns")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--block", type=int, default=5, help="questions per turn")
    parser.add_argument("--modes", default=",".join(methods.scoring_modes()),
                        help="comma-separated scoring modes (default: all)")
    parser.add_argument("--out", default="bench_results/truthfulqa_speed.json")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, key=value")
    args = parser.parse_intermixed_args()
    modes = args.modes.split(",")
    recipe = load_recipe(args.recipe, ["eval.task=truthfulqa", f"eval.modes=[{args.modes}]",
                                       *args.overrides])
    print(runtime.configure(recipe.runtime))
    am = load_model(recipe.model, recipe.graft)
    config = recipe.eval
    decoding = apply_preset(recipe.decoding, "truthfulqa")
    items = truthfulqa.load(args.data, BadRows("error"), args.questions)
    encoded = [[encode_pair(am.tokenizer, p, c) for p, c in truthfulqa.pairs(it, config.prompt_template)]
               for it in items]
    runs = [(mode, shared) for mode in modes for shared in (False, True)]
    seconds = {run: 0.0 for run in runs}
    scores: dict = {run: [] for run in runs}
    load = [os.getloadavg()[0]]
    for n, start in enumerate(range(0, len(encoded), args.block)):
        block = [pair for question in encoded[start : start + args.block] for pair in question]
        for mode, shared in runs[n % len(runs):] + runs[: n % len(runs)]:
            began = time.perf_counter()
            got = score_encoded(am, block, [mode], decoding, config.batch_size,
                                config.padding_side, shared)
            seconds[mode, shared] += time.perf_counter() - began
            scores[mode, shared] += got[mode]
        load.append(os.getloadavg()[0])
    rows = [_row(mode, len(items), seconds, scores) for mode in modes]
    result = {"questions": len(items), "answers": sum(map(len, encoded)), "rows": rows,
              "runtime": runtime.describe(), "load_average": [min(load), max(load)]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(_table(result))


def _row(mode: str, questions: int, seconds: dict, scores: dict) -> dict:
    before, after = seconds[mode, False], seconds[mode, True]
    diff = max(abs(a - b) / max(1.0, abs(a))
               for a, b in zip(scores[mode, False], scores[mode, True], strict=True))
    return {"mode": mode, "before_s": before, "after_s": after,
            "before_qps": questions / before, "after_qps": questions / after,
            "speedup": before / after, "max_rel_diff": diff}


def _table(result: dict) -> str:
    lines = [f"{result['questions']} questions ({result['answers']} answers); "
             f"{result['runtime']}; load average {result['load_average'][0]:.1f}-"
             f"{result['load_average'][1]:.1f}", "",
             "| mode | before s | before questions/s | after s | after questions/s | speed-up |"
             " largest score difference |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['mode']} | {r['before_s']:.1f} | {r['before_qps']:.3f} | "
                     f"{r['after_s']:.1f} | {r['after_qps']:.3f} | {r['speedup']:.2f}x | "
                     f"{r['max_rel_diff']:.1e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        main()
    except ToolkitError as error:  # a bad recipe, override or data file: one line
        sys.exit(f"truthfulqa_speed: {error}")
