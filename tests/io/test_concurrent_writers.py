"""Two writers of one output: the second process is refused with one line (exit 2) while the
first holds its lock, changes nothing, and the first finishes as if alone."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit.cli.main import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PAIR = {"id": "0", "prompt_ids": [5, 6], "chosen_ids": [7], "rejected_ids": [8],
        "chosen_tau": [0], "rejected_tau": [5]}
CASES = {
    "graft": (["graft"], "{t}/out"),
    "train": (["train", "data.pairs={t}/pairs.jsonl", "trainer.max_epochs=1"], "{t}/out"),
    "generate": (["generate", "generate.prompts=[hello]", "generate.output={t}/gen.jsonl"],
                 "{t}/gen.jsonl"),
    "collect": (["collect", "data.pairs={t}/p.jsonl", "data.synthetic.train_prompts=2"],
                "{t}/p.jsonl"),
    "bench": (["bench", "model.path=null", "model.random_shape=tiny", "bench.batch_sizes=[1]",
               "bench.prompt_len=4", "bench.new_tokens=2", "bench.repeats=1", "bench.warmup=0",
               "bench.modes=[greedy]", "bench.plot=false", "bench.progress=false",
               "bench.output_dir={t}/bench"], "{t}/bench"),
    "eval": (["eval", "eval.task=gsm8k", "eval.data_path={t}/gsm8k.jsonl", "eval.modes=[greedy]",
              "eval.progress=false", "eval.output_dir={t}/eval"], "{t}/eval"),
}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", list(CASES))
def test_a_second_writer_is_refused(command, tmp_path, tiny_llama_dir, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path}/out\nwork_dir: {tmp_path}/work\n"
                      f"model:\n  path: {tiny_llama_dir}\ngraft:\n  head:\n    hidden_size: 8\n"
                      "decoding:\n  max_new_tokens: 2\ntrainer:\n  batch_size: 1\n")
    (tmp_path / "pairs.jsonl").write_text(json.dumps(PAIR) + "\n")
    (tmp_path / "gsm8k.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    subcommand, *overrides = CASES[command][0]
    argv = [subcommand, str(recipe), *(o.format(t=tmp_path) for o in overrides)]
    ready, go = tmp_path / "ready", tmp_path / "go"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    first = subprocess.Popen([sys.executable, str(ROOT / "tests" / "_hold.py"), str(ready),
                              str(go), "--", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the first writer never loaded its model"
            time.sleep(0.05)
        before = _tree(tmp_path)
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err
        held = CASES[command][1].format(t=tmp_path)
        assert code == 2 and err.count("error:") == 1 and "Traceback" not in err, err
        assert f"{held} is being written by another process" in err, err
        assert _tree(tmp_path) == before
    finally:
        go.touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
