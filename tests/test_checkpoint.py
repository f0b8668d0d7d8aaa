"""Save -> load round trips, self-contained checkpoints, and the errors of broken checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from _generation import graft, prompt_batch
from toolkit import AugmentedModel, __version__
from toolkit.errors import CheckpointError
from toolkit.graft import checkpoint
from toolkit.testing import save_tiny

NEW = 5


def _train_a_little(model) -> None:
    """Give the head non-zero weights so a round trip has something to preserve."""
    with torch.no_grad():
        for p in model.head.parameters():
            p.copy_(torch.randn_like(p))


@pytest.fixture(scope="module")
def trained(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    _train_a_little(model)
    model.decoding.max_new_tokens = NEW
    return model


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_round_trip_same_tensors_and_generations(trained, tiny_llama_dir, tmp_path):
    target = trained.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("tokenizer")) == [
        "augment_config.json", "head.safetensors"]
    config = json.loads((target / "augment_config.json").read_text())
    assert config["base"] == str(Path(tiny_llama_dir).resolve())
    assert config["toolkit_version"] == __version__ and config["decoding"]["max_new_tokens"] == NEW
    assert len(config["base_fingerprint"]["sha256"]) == 64
    with safe_open(str(target / "head.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["toolkit_version"] == __version__ and json.loads(meta["head_config"])["hidden_size"] == 16

    loaded = AugmentedModel.from_pretrained(target)
    for (k, a), (k2, b) in zip(trained.head.state_dict().items(), loaded.head.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert loaded.graft_config == trained.graft_config and loaded.decoding == trained.decoding
    ids, mask = prompt_batch(loaded.tokenizer)
    kwargs = dict(adaptive_temperature={"mode": "token", "choice": "sample"}, do_sample=True,
                  sled=True, seed=3, return_records=True)
    a, b = trained.generate(ids, mask, **kwargs), loaded.generate(ids, mask, **kwargs)
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(a.temperature_index, b.temperature_index)
    assert a.temperature_index.unique().numel() > 1, "a random head should pick several temperatures"


def test_self_contained_survives_deleting_the_base(tmp_path):
    base_dir = save_tiny(tmp_path / "base-model", "gemma2", seed=1)
    model = graft(base_dir)
    _train_a_little(model)
    ids, mask = prompt_batch(model.tokenizer)
    expected = model.generate(ids, mask, sled=True, max_new_tokens=NEW)
    head_only = model.save_pretrained(tmp_path / "head-only")
    full = model.save_pretrained(tmp_path / "full", self_contained=True)
    assert json.loads((full / "augment_config.json").read_text())["base"] == "self"
    assert (full / "base" / "model.safetensors").is_file()
    assert (_dir_size(head_only / "head.safetensors") + _dir_size(head_only / "augment_config.json")
            < _dir_size(full / "base") / 10)
    shutil.rmtree(base_dir)
    loaded = AugmentedModel.from_pretrained(full)
    assert torch.equal(loaded.generate(ids, mask, sled=True, max_new_tokens=NEW), expected)
    with pytest.raises(CheckpointError, match="refers to a base model at .*base-model.*self_contained=True"):
        AugmentedModel.from_pretrained(head_only)


def test_overwrite_is_atomic_and_failures_leave_nothing(trained, tmp_path, monkeypatch):
    target = trained.save_pretrained(tmp_path / "ckpt")
    before = (target / "head.safetensors").read_bytes()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        trained.save_pretrained(target)
    with pytest.raises(RuntimeError, match="disk full"):
        trained.save_pretrained(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert (target / "head.safetensors").read_bytes() == before
    monkeypatch.undo()
    _train_a_little(trained)
    trained.save_pretrained(target)
    assert (target / "head.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_broken_checkpoints_raise_checkpoint_error(trained, tiny_model_dir, tmp_path):
    target = trained.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="no checkpoint at .*nowhere.*does not exist"):
        AugmentedModel.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no model directory exists at .*nowhere"):
        AugmentedModel.graft(str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match="fingerprint mismatch.*model_type: grafted 'llama' vs found 'gemma'"):
        AugmentedModel.from_pretrained(target, base=tiny_model_dir("gemma"))

    head = target / "head.safetensors"
    data = head.read_bytes()
    head.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="head.safetensors cannot be read.*truncated or corrupted"):
        AugmentedModel.from_pretrained(target)
    head.unlink()
    with pytest.raises(CheckpointError, match="head.safetensors is missing"):
        AugmentedModel.from_pretrained(target)

    other = trained.save_pretrained(tmp_path / "other")
    config_path = other / "augment_config.json"
    config = json.loads(config_path.read_text())
    config["graft"]["head"]["hidden_size"] = 8
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="wrong shape"):
        AugmentedModel.from_pretrained(other)
    (other / "augment_config.json").unlink()
    with pytest.raises(CheckpointError, match="augment_config.json is missing"):
        AugmentedModel.from_pretrained(other)


def test_missing_keys_and_unreferable_base(trained, tmp_path):
    from safetensors.torch import save_file

    target = trained.save_pretrained(tmp_path / "ckpt")
    state = {k: v.contiguous() for k, v in trained.head.state_dict().items()}
    dropped = sorted(state)[0]
    del state[dropped]
    save_file(state, str(target / "head.safetensors"))
    with pytest.raises(CheckpointError, match=f"missing keys \\['{dropped}'\\]"):
        AugmentedModel.from_pretrained(target)
    from toolkit.testing import build_tiny_model

    in_memory = AugmentedModel.graft(build_tiny_model("llama"))
    with pytest.raises(CheckpointError, match="self_contained=True"):
        in_memory.save_pretrained(tmp_path / "nope")
