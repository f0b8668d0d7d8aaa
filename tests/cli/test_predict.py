"""Data-parallel generation: 2 CPU processes (ddp, gloo) shard the prompts through Lightning's
predict loop and rank 0 merges one JSONL in input order, equal to a single-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _generation import greedy_texts

from toolkit.graft.augmented import AugmentedModel

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["Hello there", "The cat sat", "1 2 3 4", "abc", "xyz zz", "Once upon", "bb cc dd"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def generate(
    tmp_path: Path, model_dir: Path, output: Path, *extra: str
) -> subprocess.CompletedProcess:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model:\n  path: {model_dir}\ndecoding:\n  max_new_tokens: 5\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_PORT=str(free_port()))
    command = [
        sys.executable,
        "cli.py",
        "generate",
        str(recipe),
        f"generate.input={tmp_path / 'in.jsonl'}",
        f"generate.output={output}",
        "generate.batch_size=1",
        *extra,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_two_processes_write_one_jsonl_in_input_order(tmp_path, tiny_llama_dir):
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS))
    )
    parallel = generate(
        tmp_path,
        tiny_llama_dir,
        tmp_path / "par.jsonl",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.strategy=ddp",
    )
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    assert "Starting with 2 processes" in parallel.stdout + parallel.stderr
    assert parallel.stdout.count("wrote 7 completions") == 1, "only rank 0 reports"
    rows = [json.loads(line) for line in (tmp_path / "par.jsonl").read_text().splitlines()]
    assert [(r["id"], r["prompt"]) for r in rows] == [(f"p{i}", p) for i, p in enumerate(PROMPTS)]
    expected = greedy_texts(AugmentedModel.graft(tiny_llama_dir), PROMPTS, 5)
    assert all(expected)
    assert [r["completion"] for r in rows] == expected
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
