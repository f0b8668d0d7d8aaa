"""A file is proved ours before one byte of it changes: an output is never an input (by path,
symlink or inode), an append-only JSONL file without a producer record is refused before its
torn tail is touched, and eval/bench/run reports replace only reports this toolkit wrote.
Every refusal: one `error:` line, exit 2, no traceback, before any model loads, and every user
byte unchanged (compared by SHA-256)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from _generation import graft

from toolkit.cli.main import main
from toolkit.core.errors import DataError
from toolkit.eval.config import EvalConfig
from toolkit.eval.run import run_eval
from toolkit.graft import checkpoint
from toolkit.io import reports

BINARY = bytes(range(256)) * 4 + b"\n\x00\xff torn tail without newline"


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path, tiny_llama_dir):
    """A user's folder: a recipe, a prompt file, a binary file, a checkpoint."""
    (tmp_path / "r.yaml").write_text(
        f"output_dir: {tmp_path}/out\nwork_dir: {tmp_path}/work\nmodel:\n  path: {tiny_llama_dir}\n"
        "graft:\n  head:\n    hidden_size: 8\ndecoding:\n  max_new_tokens: 2\n"
        "data:\n  synthetic:\n    train_prompts: 2\n")
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hello"}\n{"prompt": "world"}\n')
    (tmp_path / "blob.bin").write_bytes(BINARY)
    (tmp_path / "user.jsonl").write_text('{"id": "u1"}\n{"id": "u2"}')
    graft(tiny_llama_dir).save_pretrained(tmp_path / "ckpt")
    return tmp_path


def refused(capsys, monkeypatch, *argv) -> str:
    """Run the CLI, which must refuse before any model loads; returns the error line."""
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("toolkit.recipes.models._load_local", no_model)
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


GENERATE_OUTPUTS = {
    "a binary file": ("blob.bin", "has no record of what produced it"),
    "the input file": ("prompts.jsonl", "is generate.input"),
    "the recipe": ("r.yaml", "is the recipe"),
    "a file inside the model": ("ckpt/head.safetensors", "lies inside model.path"),
}


@pytest.mark.parametrize("case", list(GENERATE_OUTPUTS))
def test_generate_output_that_is_not_ours_is_refused(case, project, capsys, monkeypatch):
    name, expected = GENERATE_OUTPUTS[case]
    before = hashes(project)
    model = project / "ckpt" if name.startswith("ckpt") else None
    extra = [f"model.path={model}"] if model else []
    line = refused(capsys, monkeypatch, "generate", project / "r.yaml", *extra,
                   f"generate.input={project}/prompts.jsonl", f"generate.output={project}/{name}")
    assert expected in line, line
    assert hashes(project) == before


def test_links_to_an_input_are_the_input(project, capsys, monkeypatch):
    """A hard link (same inode) and a symlink to the input are refused as the input itself."""
    os.link(project / "prompts.jsonl", project / "hard.jsonl")
    os.symlink(project / "prompts.jsonl", project / "soft.jsonl")
    before = hashes(project)
    for link in ("hard.jsonl", "soft.jsonl"):
        line = refused(capsys, monkeypatch, "generate", project / "r.yaml",
                       f"generate.input={project}/prompts.jsonl",
                       f"generate.output={project}/{link}", "generate.force_resume=true")
        assert "is generate.input" in line, line
    assert hashes(project) == before


PAIRS_OUTPUTS = {
    "data.prompts": ("prompts.jsonl", ["data.prompts={p}/prompts.jsonl"], "is data.prompts"),
    "model.path's head.safetensors": ("ckpt/head.safetensors", ["model.path={p}/ckpt"],
                                      "lies inside model.path"),
    "another checkpoint's head.safetensors": ("ckpt/head.safetensors", [],
                                              "has no record of what produced it"),
    "a binary file, forced": ("blob.bin", ["collect.force_resume=true"], "is not UTF-8"),
    "a JSONL file without its last newline, forced": (
        "user.jsonl", ["collect.force_resume=true"], "its last line has no newline"),
}


@pytest.mark.parametrize("case", list(PAIRS_OUTPUTS))
def test_pairs_that_are_not_ours_are_refused(case, project, capsys, monkeypatch):
    name, extra, expected = PAIRS_OUTPUTS[case]
    before = hashes(project)
    argv = ["collect", project / "r.yaml", f"data.pairs={project}/{name}",
            *(e.format(p=project) for e in extra)]
    if "forced" in case:  # refused after the model loads, still before any byte changes
        capsys.readouterr()
        assert main([str(a) for a in argv]) == 2
        line = capsys.readouterr().err
        assert line.count("error:") == 1 and "Traceback" not in line
    else:
        line = refused(capsys, monkeypatch, *argv)
    assert expected in line, line
    assert hashes(project) == before
    assert not (project / (name + ".producer.json")).exists()
    checkpoint.read(project / "ckpt")  # its hashes still verify


def test_eval_and_bench_replace_only_their_own_reports(project, capsys, monkeypatch):
    data = project / "gsm8k.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    mine = project / "mine"
    mine.mkdir()
    for name in ("report.md", "bench.json"):
        (mine / name).write_text(f"my own {name}\n")
    before = hashes(project)
    evaluate = ["eval", project / "r.yaml", "eval.task=gsm8k", f"eval.data_path={data}",
                "eval.modes=[greedy]", "eval.progress=false"]
    line = refused(capsys, monkeypatch, *evaluate, f"eval.output_dir={mine}")
    assert "eval.output_dir=" in line and "holds report.md, which this toolkit did not write" in line
    bench = ["bench", project / "r.yaml", "model.path=null", "model.random_shape=tiny",
             "bench.batch_sizes=[1]", "bench.prompt_len=4", "bench.new_tokens=2",
             "bench.repeats=1", "bench.warmup=0", "bench.modes=[greedy]", "bench.plot=false",
             "bench.progress=false"]
    line = refused(capsys, monkeypatch, *bench, f"bench.output_dir={mine}")
    assert "holds bench.json, which this toolkit did not write" in line
    assert hashes(project) == before
    monkeypatch.undo()
    ours = project / "ours"
    for _ in range(2):  # a rerun replaces its own reports
        assert main([str(a) for a in evaluate] + [f"eval.output_dir={ours}"]) == 0
    (ours / "report.md").write_text("edited by hand\n")
    line = refused(capsys, monkeypatch, *evaluate, f"eval.output_dir={ours}")
    assert "holds report.md, which this toolkit did not write (or which changed since" in line
    assert (ours / "report.md").read_text() == "edited by hand\n"
    monkeypatch.undo()
    (ours / "report.md").unlink()  # a report deleted by hand is simply written again
    assert main([str(a) for a in evaluate] + [f"eval.output_dir={ours}"]) == 0
    assert (ours / "report.md").read_text().startswith("# Evaluation: gsm8k")
    assert {"report.md", "results.json"} <= set(
        json.loads((ours / reports.MANIFEST).read_text())["files"])


def test_run_eval_refuses_a_foreign_results_file(project, tiny_llama_dir):
    """The library route checks too, before any item is scored."""
    data = project / "gsm8k.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    (project / "res").mkdir()
    (project / "res" / "results.json").write_text("{}")
    config = EvalConfig(task="gsm8k", data_path=str(data), modes=["greedy"], progress=False,
                        output_dir=str(project / "res"))
    with pytest.raises(DataError, match="holds results.json, which this toolkit did not write"):
        run_eval(graft(tiny_llama_dir), config)
    assert (project / "res" / "results.json").read_text() == "{}"
    assert not (project / "res" / reports.MANIFEST).exists()
