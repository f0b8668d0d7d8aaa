"""Fault injection: kill -9 and Ctrl-C (SIGINT) at each stage (save, collect, train, generate)
in a subprocess, then rerun the same command: nothing written earlier is lost or duplicated, a
checkpoint is always the old or the new one, and the result equals an uninterrupted run's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from toolkit.cli.main import main
from toolkit.graft import checkpoint

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).resolve().parents[1] / "_faults.py"
ROOT = Path(__file__).resolve().parents[2]
SIGNALS = {"KILL": -signal.SIGKILL, "INT": 130}


def _recipe(tmp: Path, tiny: Path) -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(
        f"run_name: f\noutput_dir: {tmp}/out\nwork_dir: {tmp}/work\nmodel:\n  path: {tiny}\n"
        "graft:\n  head:\n    hidden_size: 8\n"
        "decoding:\n  max_new_tokens: 4\n  do_sample: true\n  seed: 5\n"
        "collect:\n  num_replies: 3\n  prompts_per_batch: 2\n  max_new_tokens: 4\n"
        "data:\n  synthetic:\n    train_prompts: 8\n    prompt_length: 4\n"
        "trainer:\n  accelerator: cpu\n  max_epochs: 2\n  batch_size: 4\n"
        "generate:\n  batch_size: 2\n"
    )
    (tmp / "in.jsonl").write_text("".join(json.dumps({"id": i, "prompt": f"{i} and"}) + "\n"
                                          for i in range(6)))
    return path


def _interrupted(point: str, sig: str, n: int, *argv) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(DRIVER), point, sig, str(n), "--",
                           *map(str, argv)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == SIGNALS[sig], proc.stderr[-2000:]
    if sig == "INT":
        assert "rerun the same command to resume" in proc.stderr


def _run(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


def _files(directory: Path) -> dict[str, object]:
    """A checkpoint's content: every file's bytes, except the safetensors files (their tensors
    and metadata: safetensors writes the metadata keys in a per-process order) and the hashes
    in augment_config.json (they follow from the files)."""
    content: dict[str, object] = {}
    for path in sorted(directory.rglob("*")):
        name = str(path.relative_to(directory))
        if not path.is_file():
            continue
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as fh:
                content[name] = (fh.metadata(), {k: fh.get_tensor(k).tolist() for k in fh.keys()})  # noqa: SIM118
        elif path.name == "augment_config.json":
            content[name] = {k: v for k, v in json.loads(path.read_text()).items() if k != "files"}
        else:
            content[name] = path.read_bytes()
    return content


@pytest.fixture(scope="module")
def baseline(tiny_llama_dir, tmp_path_factory):
    """Every stage run once without interruption."""
    tmp = tmp_path_factory.mktemp("baseline")
    recipe = _recipe(tmp, tiny_llama_dir)
    _run("graft", recipe, "model.seed=1")
    graft_seed1 = _files(tmp / "out")
    _run("collect", recipe)
    _run("train", recipe)
    _run("generate", recipe, f"generate.input={tmp}/in.jsonl", f"generate.output={tmp}/gen.jsonl")
    return {"tmp": tmp, "graft": graft_seed1, "pairs": (tmp / "work" / "pairs.jsonl").read_bytes(),
            "trained": _files(tmp / "out"), "generated": (tmp / "gen.jsonl").read_bytes()}


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if ".partial-" in p.name or ".old-" in p.name)


@pytest.mark.parametrize("sig", list(SIGNALS))
@pytest.mark.parametrize("point", ["between-renames", "head-written"])
def test_save(point, sig, baseline, tiny_llama_dir, tmp_path):
    recipe = _recipe(tmp_path, tiny_llama_dir)
    _run("graft", recipe)  # the old checkpoint (model.seed=0)
    old = _files(tmp_path / "out")
    _interrupted(point, sig, 1, "graft", recipe, "model.seed=1")
    after = _files(checkpoint.read(tmp_path / "out").directory)  # loads: recovered if needed
    assert after in (old, baseline["graft"])
    assert not _leftovers(tmp_path)
    _run("graft", recipe, "model.seed=1")
    assert _files(tmp_path / "out") == baseline["graft"]


@pytest.mark.parametrize("sig", list(SIGNALS))
def test_collect(sig, baseline, tiny_llama_dir, tmp_path):
    recipe = _recipe(tmp_path, tiny_llama_dir)
    _interrupted("pair-appended", sig, 3, "collect", recipe)
    pairs = tmp_path / "work" / "pairs.jsonl"
    written = pairs.read_bytes()
    assert written and baseline["pairs"].startswith(written)
    _run("collect", recipe)
    assert pairs.read_bytes() == baseline["pairs"]
    ids = [json.loads(line)["id"] for line in pairs.read_text().splitlines()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("sig", list(SIGNALS))
def test_train(sig, baseline, tiny_llama_dir, tmp_path):
    recipe = _recipe(tmp_path, tiny_llama_dir)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "pairs.jsonl").write_bytes(baseline["pairs"])
    shutil.copy(baseline["tmp"] / "work" / "pairs.jsonl.producer.json", tmp_path / "work")
    _run("graft", recipe)
    old = _files(tmp_path / "out")
    _interrupted("training-step", sig, 2, "train", recipe)
    assert _files(tmp_path / "out") == old
    assert (tmp_path / "work" / "pairs.jsonl").read_bytes() == baseline["pairs"]
    _run("train", recipe)
    assert _files(tmp_path / "out") == baseline["trained"]


@pytest.mark.parametrize("sig", list(SIGNALS))
def test_generate(sig, baseline, tiny_llama_dir, tmp_path):
    recipe = _recipe(tmp_path, tiny_llama_dir)
    args = ("generate", recipe, f"generate.input={tmp_path}/in.jsonl",
            f"generate.output={tmp_path}/gen.jsonl")
    _interrupted("completion-appended", sig, 3, *args)
    written = (tmp_path / "gen.jsonl").read_bytes()
    assert written.count(b"\n") == 3 and baseline["generated"].startswith(written)
    _run(*args)
    assert (tmp_path / "gen.jsonl").read_bytes() == baseline["generated"]
