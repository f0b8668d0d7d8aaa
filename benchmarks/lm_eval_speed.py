"""lm-eval backend throughput (requests/s) with and without the shared prefix.

Builds lm-eval's own truthfulqa_mc1/mc2 requests over the first `--questions` questions of a
local TruthfulQA CSV (`toolkit.eval.lm_eval_tasks`; nothing is downloaded), loads the model
once, and runs the log-likelihood requests through `SurgeryLM` for each method, with
`shared_prefix=False` (HFLM: every whole context + choice) and `shared_prefix=True`. The runs take
turns block by block (`--block` questions, the order rotating), so a change in the machine's
load hits them alike. Prints a table (requests/s, speed-up, largest log-likelihood difference,
is-greedy flags that differ) and writes it as JSON.

    OMP_NUM_THREADS=1 python3 benchmarks/lm_eval_speed.py MODEL_DIR --data TruthfulQA.csv \
        --questions 10 --out bench_results/lm_eval_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from toolkit.eval import harness, truthfulqa
from toolkit.eval.data import BadRows
from toolkit.eval.lm_eval_tasks import write_tasks

METHODS = {"plain": {}, "dola": {"dola": True}, "sled": {"sled": True}}
TASKS = ("truthfulqa_mc1_local", "truthfulqa_mc2_local")


def _requests(csv: str, questions: int) -> list[list]:
    """lm-eval's instances per question (both tasks), in question order."""
    from lm_eval.tasks import TaskManager

    items = truthfulqa.load(csv, BadRows("skip"), questions)
    folder = write_tasks(items, tempfile.mkdtemp(prefix="lm-eval-speed-"))
    tasks = TaskManager(include_path=str(folder)).load(list(TASKS))["tasks"]
    per_question: list[list] = [[] for _ in items]
    for name in TASKS:
        task = tasks[name]
        task.build_all_requests(rank=0, world_size=1)
        for instance in task.instances:
            per_question[instance.doc_id].append(instance)
    return per_question


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an AugmentedModel checkpoint or a base model directory")
    parser.add_argument("--data", required=True, help="a CSV in the TruthfulQA columns")
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--block", type=int, default=2, help="questions per turn")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=None,
                        help="lm-eval's max_length (default: the model's positions)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", default="bench_results/lm_eval_speed.json")
    args = parser.parse_args()
    questions = _requests(args.data, args.questions)
    am = harness.load_model(args.model)
    extra = {} if args.max_length is None else {"max_length": args.max_length}
    lms = {(m, shared): harness.SurgeryLM(pretrained=am, device=str(am.base.device),
                                          batch_size=args.batch_size, shared_prefix=shared,
                                          **extra, **METHODS[m])
           for m in args.methods for shared in (False, True)}
    runs = list(lms)
    seconds = {run: 0.0 for run in runs}
    answers: dict = {run: [] for run in runs}
    load = [os.getloadavg()[0]]
    for n, start in enumerate(range(0, len(questions), args.block)):
        block = [r for q in questions[start : start + args.block] for r in q]
        for run in runs[n % len(runs):] + runs[: n % len(runs)]:
            began = time.perf_counter()
            answers[run] += lms[run].loglikelihood(block, disable_tqdm=True)
            seconds[run] += time.perf_counter() - began
        load.append(os.getloadavg()[0])
    count = sum(map(len, questions))
    rows = [_row(m, count, seconds, answers) for m in args.methods]
    result = {"model": str(args.model), "questions": len(questions), "requests": count,
              "batch_size": args.batch_size, "threads": torch.get_num_threads(), "rows": rows,
              "load_average": [min(load), max(load)]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(_table(result))


def _row(method: str, count: int, seconds: dict, answers: dict) -> dict:
    before, after = seconds[method, False], seconds[method, True]
    old, new = answers[method, False], answers[method, True]
    diff = max(abs(a - b) / max(1.0, abs(a)) for (a, _), (b, _) in zip(old, new, strict=True))
    flags = sum(g != h for (_, g), (_, h) in zip(old, new, strict=True))
    return {"method": method, "before_s": before, "after_s": after,
            "before_rps": count / before, "after_rps": count / after,
            "speedup": before / after, "max_rel_diff": diff, "greedy_flags_differ": flags}


def _table(result: dict) -> str:
    lines = [f"{result['model']}: {result['questions']} questions ({result['requests']} "
             f"requests), batch {result['batch_size']}, {result['threads']} thread(s); load "
             f"average {result['load_average'][0]:.1f}-{result['load_average'][1]:.1f}", "",
             "| method | before s | before requests/s | after s | after requests/s | speed-up |"
             " largest difference | greedy flags differing |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['before_s']:.1f} | {r['before_rps']:.2f} | "
                     f"{r['after_s']:.1f} | {r['after_rps']:.2f} | {r['speedup']:.2f}x | "
                     f"{r['max_rel_diff']:.1e} | {r['greedy_flags_differ']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
