"""Never lose a user's data: saving replaces only a checkpoint this toolkit wrote, the directory
swap leaves the old or the new checkpoint whatever fails, long jobs write as they go and resume,
and a pairs or output file is locked while written and resumed only by the producer that
started it."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _generation import graft

from toolkit.cli.main import main
from toolkit.core.errors import CheckpointError, DataError
from toolkit.graft import checkpoint
from toolkit.io import atomic, files, layout
from toolkit.lpo import pairs
from toolkit.lpo.collect import collect_pairs
from toolkit.lpo.config import CollectConfig


@pytest.fixture
def model(tiny_llama_dir):
    return graft(tiny_llama_dir)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _project(root: Path) -> Path:
    """A user's project: code, notes and a .git folder."""
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "train.py").write_text("print('mine')\n")
    (root / "notes.md").write_text("# notes\n")
    return root


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_output_dir_never_replaces_a_project(capsys, tmp_path, tiny_llama_dir, monkeypatch):
    project = _project(tmp_path / "project")
    before = _tree(project)
    recipe = project / "r.yaml"
    recipe.write_text(f"model:\n  path: {tiny_llama_dir}\ngraft:\n  head:\n    hidden_size: 8\n")
    before = _tree(project)
    monkeypatch.chdir(project)
    for target, message in [
        (".", "is the current directory or holds it"),
        (str(project), "is the current directory or holds it"),
        (str(tmp_path), "is the current directory or holds it"),
    ]:
        code, err = run(capsys, "graft", recipe, f"output_dir={target}")
        assert code == 2 and message in err and err.count("\n") == 1, err
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, "graft", recipe, f"output_dir={project}")
    assert code == 2 and "non-empty directory that is not a checkpoint this toolkit wrote" in err
    assert _tree(project) == before


def test_inputs_and_work_files_never_sit_inside_output_dir(capsys, tmp_path, tiny_llama_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model:\n  path: {tiny_llama_dir}\n")
    out = tmp_path / "out"
    out.mkdir()
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("{}\n")
    cases = [
        ("train", [f"output_dir={out}", f"work_dir={out}", f"data.pairs={pairs_file}"],
         "work_dir="),
        ("train", [f"output_dir={out}", f"work_dir={out}/w", f"data.pairs={pairs_file}"],
         "work_dir="),
        ("train", [f"output_dir={out}", f"work_dir={tmp_path}/w", f"data.pairs={pairs_file}",
                   f"trainer.checkpoint_dir={out}/lightning"], "trainer.checkpoint_dir="),
        ("run", [f"output_dir={tmp_path}/new", f"work_dir={tmp_path}/new/w"], "work_dir="),
        ("run", [f"output_dir={tmp_path}/new", f"data.pairs={tmp_path}/new/p.jsonl"],
         "data.pairs="),
    ]
    for command, overrides, key in cases:
        code, err = run(capsys, command, recipe, *overrides)
        assert code == 2 and key in err and "inside output_dir" in err, err
    code, err = run(capsys, "run", recipe, f"output_dir={tmp_path}", f"work_dir={tmp_path}/w")
    assert code == 2 and "not a checkpoint this toolkit wrote" in err
    assert pairs_file.read_text() == "{}\n" and out.is_dir() and not any(out.iterdir())


def test_only_a_checkpoint_without_foreign_files_is_replaced(model, tmp_path):
    target = model.save_pretrained(tmp_path / "ckpt")
    model.save_pretrained(target)  # a checkpoint this toolkit wrote: replaced
    (target / "my-notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="also holds my-notes.txt"):
        model.save_pretrained(target)
    assert (target / "my-notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        model.save_pretrained(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert model.save_pretrained(empty) == empty.resolve()


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


_HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_kill_between_the_two_renames_recovers_the_old_checkpoint(model, tmp_path, monkeypatch):
    """Where renameat2 is missing, a kill after the first rename leaves only .old-*: the next
    load or save puts it back; partial directories nobody holds are removed, one a writer
    holds a lock on is left alone."""
    target = model.save_pretrained(tmp_path / "ckpt")
    saved = _tree(target)
    pid = _dead_pid()
    old = target.with_name(f".ckpt.old-{pid}-0123abcd")
    partial = target.with_name(f".ckpt.partial-{pid}-0123abcd")
    alive = target.with_name(f".ckpt.partial-{pid}-4567cdef")
    os.rename(target, old)
    partial.mkdir()
    alive.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", _HOLD, str(alive)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "held\n"
        loaded = checkpoint.read(target)  # recovered on load
        assert loaded.directory == target and _tree(target) == saved
        assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "ckpt"]
        os.rename(target, old)
        model.save_pretrained(target)  # and on save
        assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "ckpt"]
    finally:
        writer.communicate("")


def test_second_rename_failure_rolls_back(model, tmp_path, monkeypatch):
    target = model.save_pretrained(tmp_path / "ckpt")
    saved = _tree(target)
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    real, calls = os.rename, []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "rename", flaky)
    with torch.no_grad():
        model.head.mlp[0].weight.add_(1.0)
    with pytest.raises(OSError, match="I/O error"):
        model.save_pretrained(target)
    assert _tree(target) == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize("exchange", [True, False])
def test_overwrite_swaps_and_leaves_nothing_beside(model, tmp_path, monkeypatch, exchange):
    target = model.save_pretrained(tmp_path / "ckpt")
    before = _tree(target)
    if not exchange:
        monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    with torch.no_grad():
        model.head.mlp[0].weight.add_(1.0)
    model.save_pretrained(target)
    assert _tree(target)["head.safetensors"] != before["head.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_partial_directory_is_removed_on_any_interruption(model, tmp_path, monkeypatch,
                                                          interrupt):
    target = model.save_pretrained(tmp_path / "ckpt")
    before = _tree(target)

    def stop(*args, **kwargs):
        raise interrupt()

    monkeypatch.setattr(checkpoint, "save_file", stop)
    for where in (target, tmp_path / "new"):
        with pytest.raises(interrupt):
            model.save_pretrained(where)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert _tree(target) == before


def test_layout_check_needs_no_torch():
    code = "import sys, toolkit.io.layout, toolkit.io.files; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def by_sum(prompts, replies, records):
    return [float(sum(r["reply_ids"]) % 7) for r in records]


def _prompts(n: int = 6) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    return [{"id": str(i), "prompt_ids": torch.randint(3, 300, (4,), generator=gen).tolist()}
            for i in range(n)]


def test_collect_records_its_producer_and_refuses_another(model, tmp_path):
    out = tmp_path / "pairs.jsonl"
    config = CollectConfig(num_replies=3, prompts_per_batch=2, max_new_tokens=3)
    collect_pairs(model, _prompts(4), config, out, reward=by_sum, progress=False)
    producer = json.loads((tmp_path / "pairs.jsonl.producer.json").read_text())["producers"]
    assert len(producer) == 1 and producer[0]["collect"]["seed"] == 0
    assert len(producer[0]["model"]) == 64
    other = CollectConfig(num_replies=3, prompts_per_batch=2, max_new_tokens=3, seed=1)
    before = out.read_bytes()
    with pytest.raises(DataError, match="written by another producer .*seed.*0 -> 1"):
        collect_pairs(model, _prompts(6), other, out, reward=by_sum, progress=False)
    with torch.no_grad():
        model.head.mlp[0].weight.add_(1.0)  # another head: another producer
    with pytest.raises(DataError, match="another producer \\(model:"):
        collect_pairs(model, _prompts(6), config, out, reward=by_sum, progress=False)
    assert out.read_bytes() == before
    stats = collect_pairs(model, _prompts(6), other, out, reward=by_sum, progress=False,
                          force=True)
    assert stats.skipped == 4
    assert len(json.loads((tmp_path / "pairs.jsonl.producer.json").read_text())["producers"]) == 2


def test_collect_refuses_a_file_without_producer_and_a_locked_file(model, tmp_path):
    out = tmp_path / "pairs.jsonl"
    out.write_text(json.dumps({"id": "0", "reward": 1.0}) + "\n")
    config = CollectConfig(num_replies=3, prompts_per_batch=2, max_new_tokens=3)
    with pytest.raises(DataError, match="no record of what produced it"):
        collect_pairs(model, _prompts(2), config, out, reward=by_sum, progress=False)
    locked = tmp_path / "locked.jsonl"
    with (open(locked, "ab") as fh, files.exclusive(fh, locked, "data.pairs"),
          pytest.raises(DataError, match="being written by another process")):
        collect_pairs(model, _prompts(2), config, locked, reward=by_sum, progress=False)
    assert locked.read_bytes() == b""


def test_duplicated_prompt_ids_are_refused(tmp_path):
    line = {"id": "7", "prompt_ids": [3], "chosen_ids": [4], "rejected_ids": [5],
            "chosen_tau": [0], "rejected_tau": [1]}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataError, match="jsonl:2: prompt id '7' repeats line 1"):
        pairs.read_pairs(path)


def test_check_writable_reports_read_only_and_full_disks(tmp_path, monkeypatch):
    files.check_writable(tmp_path / "new" / "deeper" / "out.jsonl", "generate.output")
    assert not (tmp_path / "new").exists()
    with pytest.raises(DataError, match="cannot be written"):
        files.check_writable("/proc/out.jsonl", "generate.output")
    (tmp_path / "afile").write_text("")
    with pytest.raises(DataError, match="is a file, not a folder"):
        files.check_writable(tmp_path / "afile" / "out.jsonl", "generate.output")

    class Full:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(files.os, "statvfs", lambda path: Full())
    with pytest.raises(DataError, match="the disk holding .* is full"):
        files.check_writable(tmp_path / "out.jsonl", "generate.output")


def test_is_complete_only_for_toolkit_checkpoints(model, tmp_path):
    target = model.save_pretrained(tmp_path / "ckpt")
    assert layout.is_complete(target)
    (target / "augment_config.json").write_text("{not json")
    assert not layout.is_complete(target)
    assert not layout.is_complete(tmp_path / "missing")


def _generate_setup(tmp_path, tiny_llama_dir) -> tuple[Path, Path]:
    recipe = tmp_path / "g.yaml"
    recipe.write_text(
        f"model:\n  path: {tiny_llama_dir}\ngraft:\n  head:\n    hidden_size: 8\n"
        "decoding:\n  max_new_tokens: 4\n  do_sample: true\n  seed: 3\n"
        "generate:\n  batch_size: 2\n"
    )
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "prompt": f"{i} then"}) + "\n"
                              for i in range(5)))
    return recipe, source


def test_generate_writes_as_it_goes_and_resumes(capsys, tmp_path, tiny_llama_dir, monkeypatch):
    from toolkit.cli import predict

    recipe, source = _generate_setup(tmp_path, tiny_llama_dir)
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    args = ("generate", recipe, f"generate.input={source}")
    assert run(capsys, *args, f"generate.output={full}")[0] == 0
    real, calls = predict.append_record, []

    def interrupted(fh, record):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        real(fh, record)

    monkeypatch.setattr(predict, "append_record", interrupted)
    code, err = run(capsys, *args, f"generate.output={part}")
    assert code == 130 and "rerun the same command to resume" in err
    assert len(part.read_text().splitlines()) == 3
    monkeypatch.undo()
    assert run(capsys, *args, f"generate.output={part}")[0] == 0
    assert part.read_bytes() == full.read_bytes()
    code, err = run(capsys, *args, f"generate.output={part}", "decoding.seed=4")
    assert code == 2 and "another producer (decoding.seed: 3 -> 4)" in err
    assert part.read_bytes() == full.read_bytes()


def test_generate_output_errors_are_one_line(capsys, tmp_path, tiny_llama_dir, monkeypatch):
    from toolkit.cli import predict

    recipe, source = _generate_setup(tmp_path, tiny_llama_dir)
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": 9, "prompt": "other", "completion": "x"}) + "\n")
    args = ("generate", recipe, f"generate.input={source}", f"generate.output={out}")
    code, err = run(capsys, *args)
    assert code == 2 and "has no record of what produced it" in err
    code, err = run(capsys, *args, "generate.force_resume=true")
    assert code == 2 and "holds the completion of another prompt" in err
    out.unlink()

    def full(fh, record):
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    monkeypatch.setattr(predict, "append_record", full)
    code, err = run(capsys, *args)
    assert code == 2 and err.endswith("\n") and err.count("error:") == 1
    assert "Traceback" not in err and "cannot write" in err.splitlines()[-1]
    assert "cannot write" in err and "No space left on device" in err
