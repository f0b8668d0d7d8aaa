"""Every `python -m toolkit...` command quoted in the README or a docs page runs as written, in a
scratch folder, offline: `toolkit.eval.lm_eval_tasks` on a two-question TruthfulQA CSV, then
lm-eval through `toolkit.eval.harness` with `checkpoints/quickstart` a tiny grafted Llama. The
documented `--tasks hellaswag` reads the Hub, so that one run scores the local TruthfulQA task
the first command wrote instead; every other argument is the documented one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _datasets import truthfulqa_csv

pytest.importorskip("lm_eval")

from toolkit.graft.augmented import AugmentedModel  # noqa: E402
from toolkit.methods.options import GraftConfig, HeadConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MODULE = re.compile(r"python3? -m (toolkit(?:\.\w+)+(?: [^`\n#]*)?)")
TASKS = "toolkit.eval.lm_eval_tasks TruthfulQA.csv tasks/ --limit 100"
HARNESS = ("toolkit.eval.harness run --model surgery --model_args pretrained=checkpoints/quickstart,"
           "sled=True,sled_evolution_scale=10 --tasks hellaswag --device cpu --batch_size 8")
OFFLINE = ["--tasks", "truthfulqa_mc1_local", "--include_path", "tasks/", "--output_path", "results"]


def documented() -> list[str]:
    """The commands, each once (a command continued with `\\` over lines is one command)."""
    found = []
    for page in PAGES:
        text = re.sub(r"\\\n\s*", "", page.read_text())
        found += [" ".join(m.group(1).split()) for m in MODULE.finditer(text)]
    return list(dict.fromkeys(found))


def run_module(words: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", *words], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_every_documented_module_command_is_run_here():
    assert sorted(documented()) == sorted([TASKS, HARNESS])


@pytest.mark.slow
def test_the_documented_lm_eval_commands_run(tiny_llama_dir, tmp_path):
    truthfulqa_csv(tmp_path / "TruthfulQA.csv")
    out = run_module(TASKS.split(), tmp_path)
    assert out == f"2 questions (0 rows skipped) -> {tmp_path / 'tasks'}\n", out
    assert {p.name for p in (tmp_path / "tasks").glob("*.yaml")} == {
        "truthfulqa_mc1_local.yaml", "truthfulqa_mc2_local.yaml"}

    am = AugmentedModel.graft(str(tiny_llama_dir), GraftConfig(head=HeadConfig(hidden_size=16)))
    am.save_pretrained(tmp_path / "checkpoints" / "quickstart")
    words = HARNESS.split()
    at = words.index("--tasks")
    run_module([*words[:at], *words[at + 2:], *OFFLINE], tmp_path)
    [result] = (tmp_path / "results").glob("*/results_*.json")
    result = json.loads(result.read_text())
    assert 0.0 <= result["results"]["truthfulqa_mc1_local"]["acc,none"] <= 1.0
    assert result["config"]["surgery"]["method"] == "sled"
    assert result["config"]["surgery"]["options"]["evolution_scale"] == 10
