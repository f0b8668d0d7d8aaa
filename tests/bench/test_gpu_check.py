"""benchmarks/gpu_check.sh: its --tiny mode runs the same steps on CPU (tiny shape), so the
script the GPU machine runs cannot rot; tests needing more CUDA devices than there are skip and
the summary says which and why; without a GPU the real mode stops with one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def _run(*args, cwd):
    bin_dir = str(Path(sys.executable).parent)  # the script's python3 is this interpreter
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_tiny_mode_runs_every_step(tmp_path):
    done = _run("--tiny", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    summary = (out / "summary.md").read_text()
    log = (out / "pytest-gpu.log").read_text().strip().splitlines()[-1]
    expected = "passed" if torch.cuda.is_available() else "skipped"
    assert expected in log and "failed" not in log and f"pytest -m gpu: {log}" in summary
    found = torch.cuda.device_count()
    for recipe, need in (("train_ddp", 4), ("train_fsdp", 8)):
        if found < need:  # the documented DDP/FSDP commands skip, saying why
            assert (f"test_documented_commands::test_documented_command_runs[train "
                    f"recipes/{recipe}.yaml]: needs {need} CUDA device(s), found {found}"
                    ) in summary
    bench = json.loads((out / "bench" / "bench.json").read_text())
    assert {(r["mode"], r["batch"]) for r in bench["rows"]} >= {("greedy", 1), ("sled_k10", 2)}
    assert all(r["decode_ms_per_token"] > 0 for r in bench["rows"])
    sled = next(r for r in bench["rows"] if r["mode"] == "sled_k10" and r["batch"] == 1)
    assert f"sled_k10 at batch 1, default: {sled['ratio_to_greedy']:.2f}x greedy" in summary
    assert "| dola | shared (KV cache) |" in summary
    compiled = json.loads((out / "bench-compiled" / "bench.json").read_text())
    assert {r["mode"] for r in compiled["rows"]} == {"greedy", "floor", "sled_k10", "dola"}
    assert compiled["decoding_math"] == ("SLED/DoLa CPU math: torch ops through torch.compile "
                                         "(runtime.compile)")
    for mode in ("sled_k10", "dola"):
        row = next(r for r in compiled["rows"] if r["mode"] == mode)
        assert (f"{mode} at batch 1, runtime.compile=true: {row['ratio_to_greedy']:.2f}x "
                "greedy") in summary


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_without_a_gpu_it_says_so(tmp_path):
    done = _run(str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip() == ("gpu_check: no CUDA GPU visible to torch; run it on a GPU "
                                   "machine (or pass --tiny)")


@pytest.mark.slow
def test_serve_mode_measures_vllm_against_generate_or_says_it_is_missing(tmp_path):
    done = _run("--tiny", "--serve", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (tmp_path / "out" / "serve-summary.md").read_text()
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert summary == ("gpu_check --serve: vLLM is not installed here (add it: python3 -m "
                           "toolkit.serving.install)\n")
        return
    rows = json.loads((tmp_path / "out" / "serve" / "serve_speed.json").read_text())["rows"]
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert all(r[f"{side}_{mode}"] > 0 for r in rows for side in ("vllm", "generate")
               for mode in ("plain", "sled"))
    assert "| 2 |" in summary and "SLED/plain vLLM" in summary
