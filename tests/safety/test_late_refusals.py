"""Refusals come before the work: every path a run writes is checked before any model loads; a
full disk names the user's path and leaves no truncated file; everything written gets the
permissions of a plain new file (0666 / 0777 less the umask)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
import torch
from _generation import graft

from toolkit.cli.main import main

PAIRS = [{"id": str(i), "prompt_ids": [5 + i, 6], "chosen_ids": [7], "rejected_ids": [8 + i],
          "chosen_tau": [0], "rejected_tau": [5]} for i in range(4)]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def setup(tmp_path, tiny_llama_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path}/out\nwork_dir: {tmp_path}/work\n"
                      f"model:\n  path: {tiny_llama_dir}\ngraft:\n  head:\n    hidden_size: 8\n"
                      "trainer:\n  batch_size: 2\n  max_epochs: 1\n")
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return recipe


def _cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _no_model(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("toolkit.recipes.models._load_local", refuse)


def _one_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unwritable_checkpoint_dir_is_refused_before_the_model_loads(setup, tmp_path, capsys,
                                                                    monkeypatch):
    _no_model(monkeypatch)
    before = _hashes(tmp_path)
    line = _one_line(*_cli(capsys, "train", setup, f"data.pairs={tmp_path}/pairs.jsonl",
                           "trainer.checkpoint_dir=/proc/lightning-ckpts"))
    assert "trainer.checkpoint_dir='/proc/lightning-ckpts' cannot be written" in line
    assert _hashes(tmp_path) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["train", "graft"])
def test_a_self_contained_checkpoint_is_not_saved_into_itself(command, setup, tmp_path,
                                                             tiny_llama_dir, capsys, monkeypatch):
    ckpt = graft(tiny_llama_dir).save_pretrained(tmp_path / "ckpt", self_contained=True)
    before = _hashes(tmp_path)
    _no_model(monkeypatch)
    line = _one_line(*_cli(capsys, command, setup, f"model.path={ckpt}", f"output_dir={ckpt}",
                           f"data.pairs={tmp_path}/pairs.jsonl"))
    assert f"output_dir='{ckpt}' holds the base model of model.path" in line, line
    assert _hashes(tmp_path) == before


def _disk_fills_while_writing(monkeypatch) -> None:
    """torch.save writes a few bytes of a checkpoint, then the disk is full."""
    def full(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)


def test_full_disk_names_the_checkpoint_and_leaves_no_truncated_file(setup, tmp_path, capsys,
                                                                     monkeypatch):
    ckpts = tmp_path / "ckpts"
    _disk_fills_while_writing(monkeypatch)
    code, err = _cli(capsys, "train", setup, f"data.pairs={tmp_path}/pairs.jsonl",
                     "train.val_fraction=0.5", f"trainer.checkpoint_dir={ckpts}")
    line = _one_line(code, err)
    assert f"cannot write {ckpts}/best-epoch=0-step=" in line and ".ckpt: No space left" in line
    assert not ckpts.exists() and not (tmp_path / "out").exists()  # made empty, removed empty


def test_full_disk_during_a_save_names_output_dir(setup, tmp_path, capsys, monkeypatch):
    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr("toolkit.graft.checkpoint.save_file", full)
    line = _one_line(*_cli(capsys, "graft", setup))
    assert f"cannot write {tmp_path}/out: No space left on device" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl", "r.yaml"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(umask, setup, tmp_path, tiny_llama_dir):
    old = os.umask(umask)
    try:
        assert main(["train", str(setup), f"data.pairs={tmp_path}/pairs.jsonl"]) == 0
        graft(tiny_llama_dir).save_pretrained(tmp_path / "whole", self_contained=True)
    finally:
        os.umask(old)
    cache = tmp_path / "pairs.jsonl.sequence.features.safetensors"
    written = [cache, *(tmp_path / "out").rglob("*"), *(tmp_path / "whole").rglob("*")]
    assert {p.name for p in written} >= {"head.safetensors", "model.safetensors", "base",
                                         "augment_config.json", cache.name}
    for path in written:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
