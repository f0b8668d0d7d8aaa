"""lm-eval's TruthfulQA MC1/MC2 tasks over a local TruthfulQA-format CSV (no Hub access).

lm-eval's `truthfulqa_mc1` / `truthfulqa_mc2` read the Hub dataset `truthfulqa/truthful_qa`.
This writes into a folder the same two task configs, taken from the installed lm-eval and changed
only to read a local JSON file (`dataset_path: json`), named `truthfulqa_mc1_local` /
`truthfulqa_mc2_local`, plus that JSON built from the CSV in the Hub dataset's format:
`mc1_targets` = the best answer then the incorrect answers, `mc2_targets` = the correct answers
then the incorrect answers (labels 1 for true). MC2 is scored by lm-eval's own
`process_results_mc2`.

    python -m toolkit.eval.lm_eval_tasks TruthfulQA.csv tasks/ --limit 100
    python -m toolkit.eval.harness run --model surgery --model_args pretrained=DIR,sled=True \\
        --include_path tasks/ --tasks truthfulqa_mc1_local truthfulqa_mc2_local --device cpu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

TASKS = ("truthfulqa_mc1", "truthfulqa_mc2")
DATA = "truthfulqa_mc.json"
HUB_DATASET = "dataset_path: truthfulqa/truthful_qa\ndataset_name: multiple_choice\n"
UTILS = "from lm_eval.tasks.truthfulqa.utils import process_results_mc2  # noqa: F401\n"


def doc(item: dict[str, Any]) -> dict[str, Any]:
    """One item {question, best, true, false} as a `truthful_qa` multiple_choice row."""
    mc1 = [item["best"], *item["false"]]
    mc2 = [*item["true"], *item["false"]]
    return {"question": item["question"],
            "mc1_targets": {"choices": mc1, "labels": [1] + [0] * len(item["false"])},
            "mc2_targets": {"choices": mc2,
                            "labels": [1] * len(item["true"]) + [0] * len(item["false"])}}


def _config(task: str, data: Path) -> str:
    """lm-eval's own task YAML for `task`, reading `data` instead of the Hub dataset."""
    from importlib.resources import files

    text = files("lm_eval.tasks.truthfulqa").joinpath(f"{task}.yaml").read_text(encoding="utf-8")
    local = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n"
             f"    validation: {json.dumps(str(data))}\n")
    replaced = text.replace(HUB_DATASET, local).replace("  - truthfulqa\n", "  - truthfulqa_local\n")
    for name in TASKS:
        replaced = replaced.replace(f"{name}.yaml", f"{name}_local.yaml")
        replaced = replaced.replace(f"task: {name}\n", f"task: {name}_local\n")
    if f"task: {task}_local\n" not in replaced:
        raise RuntimeError(f"lm-eval's {task}.yaml has an unexpected layout; cannot localise it")
    return replaced


def write_tasks(items: list[dict[str, Any]], directory) -> Path:
    """Write the data JSON, both task YAMLs and their utils.py into `directory`."""
    out = Path(directory).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / DATA).write_text(json.dumps([doc(item) for item in items]) + "\n", encoding="utf-8")
    for task in TASKS:
        (out / f"{task}_local.yaml").write_text(_config(task, out / DATA), encoding="utf-8")
    (out / "utils.py").write_text(UTILS, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> None:
    from toolkit.eval import truthfulqa
    from toolkit.eval.data import BadRows

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", help="a TruthfulQA CSV in the official columns")
    parser.add_argument("directory", help="where the task YAMLs and the JSON go")
    parser.add_argument("--limit", type=int, default=None, help="the first N usable questions")
    args = parser.parse_args(argv)
    bad = BadRows("skip")
    items = truthfulqa.load(args.csv, bad, args.limit)
    out = write_tasks(items, args.directory)
    print(f"{len(items)} questions ({len(bad.skipped)} rows skipped) -> {out}")


if __name__ == "__main__":
    main()
