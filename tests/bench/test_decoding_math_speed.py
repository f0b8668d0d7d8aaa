"""benchmarks/decoding_math_speed.py on the tiny shape: the before/after table of the floor, SLED,
DoLa and composed with their math against log_softmax, and `--paths` (the C kernels, torch ops
and torch.compile side by side), so the script the figures come from cannot rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "decoding_math_speed.py"


def _run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--shape", "tiny", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_before_after_table(tmp_path):
    out = _run("--batches", "1,2", "--repeats", "1", "--out", str(tmp_path / "b"), cwd=tmp_path)
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    assert {(r["batch"], r["mode"]) for r in rows} == {
        (b, m) for b in (1, 2) for m in ("greedy", "floor", "sled_k50", "dola", "composed")}
    lines = [line for line in out.splitlines() if line.startswith("| 1 |")]
    sled = next(r for r in rows if (r["batch"], r["mode"]) == (1, "sled_k50"))
    assert f"{sled['ratio_to_floor']:.2f}x" in lines[-1]
    assert f"{sled['math_vs_log_softmax']:.2f}x" in lines[-1]
    assert f"{sled['cpu_ratio_to_floor']:.2f}x" in lines[-1]
    assert "SLED K=50 vs floor (goal 1.10x)" in out and "SLED/DoLa CPU math: " in out


@pytest.mark.slow
def test_the_paths_table(tmp_path):
    out = _run("--paths", "--batches", "1", "--repeats", "1", cwd=tmp_path)
    header = next(line for line in out.splitlines() if line.startswith("| batch |"))
    for path in ("C kernels", "torch ops", "torch.compile"):
        assert f"SLED K=50 {path} ms" in header and f"DoLa {path} ms" in header
    row = next(line for line in out.splitlines() if line.startswith("| 1 |"))
    assert len(row.split("|")) == len(header.split("|"))
