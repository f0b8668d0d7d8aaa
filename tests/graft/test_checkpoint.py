"""Save -> load round trips, self-contained checkpoints, and the errors of broken checkpoints."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from _generation import graft, prompt_batch
from safetensors import safe_open

from toolkit import AugmentedModel, __version__
from toolkit.core.errors import CheckpointError
from toolkit.graft import checkpoint
from toolkit.testing import save_tiny

NEW = 5


def _train_a_little(model, seed: int = 0) -> None:
    """Give the head non-zero weights so a round trip has something to preserve (seeded: the
    round trip asserts that this head picks several temperatures, whatever ran before; another
    seed gives other weights)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.head.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))


@pytest.fixture(scope="module")
def trained(tiny_llama_dir):
    model = graft(tiny_llama_dir, level="token")
    _train_a_little(model)
    model.decoding.max_new_tokens = NEW
    return model


def _rehash(target: Path) -> None:
    """Store the current hashes, as if the checkpoint had been saved with its files as they are
    (to reach the checks behind the content hash)."""
    config_path = target / "augment_config.json"
    config = json.loads(config_path.read_text())
    config["files"] = {k: checkpoint.integrity.sha256_file(target / k) for k in config["files"]
                       if (target / k).exists()}
    config_path.write_text(json.dumps(config))


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_round_trip_same_tensors_and_generations(trained, tiny_llama_dir, tmp_path):
    target = trained.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("tokenizer")) == [
        "README.md", "augment_config.json", "config.json", "custom_generate", "head.safetensors"]
    config = json.loads((target / "augment_config.json").read_text())
    assert config["base"] == "path:" + os.path.relpath(Path(tiny_llama_dir).resolve(), target)
    assert config["toolkit_version"] == __version__ and config["decoding"]["max_new_tokens"] == NEW
    assert len(config["base_fingerprint"]["sha256"]) == 64
    with safe_open(str(target / "head.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["toolkit_version"] == __version__ and "head_config" not in meta
    assert json.loads((target / "augment_config.json").read_text())["graft"]["head"]["temperatures"] == [
        0.0, 0.2, 0.4, 0.6, 0.8, 1.0]

    loaded = AugmentedModel.from_pretrained(target)
    for (k, a), (k2, b) in zip(trained.head.state_dict().items(), loaded.head.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert loaded.graft_config == trained.graft_config and loaded.decoding == trained.decoding
    ids, mask = prompt_batch(loaded.tokenizer)
    kwargs = dict(adaptive_temperature={"enabled": True, "choice": "sample"}, do_sample=True,
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
    weights = full / "base" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="full/base/model.safetensors does not match the content hash"):
        AugmentedModel.from_pretrained(full)


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
    _train_a_little(trained, seed=1)
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
    with pytest.raises(CheckpointError, match="head.safetensors does not match the content hash"):
        AugmentedModel.from_pretrained(target)
    _rehash(target)
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
    _rehash(other)
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
    _rehash(target)
    with pytest.raises(CheckpointError, match=f"missing keys \\['{dropped}'\\]"):
        AugmentedModel.from_pretrained(target)
    from toolkit.testing import build_tiny_model

    in_memory = AugmentedModel.graft(build_tiny_model("llama"))
    with pytest.raises(CheckpointError, match="self_contained=True"):
        in_memory.save_pretrained(tmp_path / "nope")


def test_dtype_and_device_map_pass_through(trained, tmp_path):
    target = trained.save_pretrained(tmp_path / "ckpt")
    loaded = AugmentedModel.from_pretrained(target, device_map={"": "cpu"}, dtype=torch.bfloat16)
    assert loaded.base.dtype == torch.bfloat16 and loaded.head.mlp[0].weight.dtype == torch.float32
    ids, mask = prompt_batch(loaded.tokenizer)
    out = loaded.generate(ids, mask, sled=True, adaptive_temperature=True, do_sample=True,
                          seed=0, max_new_tokens=NEW, return_records=True)
    assert torch.isfinite(out.sled_layer_weights).all()
    assert out.sequences.shape == (3, ids.shape[1] + NEW)
    assert ((out.sequences >= 0) & (out.sequences < 300)).all()


def _split_map(num_layers: int) -> dict:
    half = num_layers // 2
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.norm": 1, "lm_head": 1}
    device_map.update({f"model.layers.{i}": 0 if i < half else 1 for i in range(num_layers)})
    return device_map


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_map_generation_equals_single_device(trained, tmp_path):
    """device_map='auto' (or, with two GPUs, a split across both) generates what one device does;
    head and tap follow lm_head."""
    target = trained.save_pretrained(tmp_path / "ckpt")
    single = AugmentedModel.from_pretrained(target, device_map={"": 0})
    split = torch.cuda.device_count() >= 2
    sharded = AugmentedModel.from_pretrained(target, device_map=_split_map(4) if split else "auto")
    lm_head = sharded.parts.lm_head.weight.device
    assert next(sharded.head.parameters()).device == lm_head
    if split:
        assert lm_head == torch.device("cuda", 1)
    ids, mask = prompt_batch(single.tokenizer)
    for kwargs in ({}, {"sled": True}, {"dola": True},
                   {"adaptive_temperature": {"enabled": True, "choice": "sample"},
                    "do_sample": True, "seed": 1, "top_n_sigma": 1.0}):
        a = single.generate(ids, mask, max_new_tokens=NEW, **kwargs)
        b = sharded.generate(ids, mask, max_new_tokens=NEW, **kwargs)
        assert torch.equal(a.cpu(), b.cpu()), kwargs
    features = sharded.head_features(ids, mask)
    assert features.device == lm_head
    assert torch.allclose(features.cpu(), single.head_features(ids, mask).cpu(), atol=1e-5)


def _edit_config(target: Path, edit) -> None:
    path = target / "augment_config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def test_flipped_bytes_in_tensor_data_are_caught(trained, tmp_path):
    target = trained.save_pretrained(tmp_path / "ckpt")
    config = json.loads((target / "augment_config.json").read_text())
    assert config["format_version"] == 3 and "head.safetensors" in config["files"]
    assert all(len(v) == 64 for v in config["files"].values())
    head = target / "head.safetensors"
    data = bytearray(head.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor data: the header still parses
    head.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="head.safetensors does not match the content hash"):
        AugmentedModel.from_pretrained(target)


def test_same_architecture_other_weights_is_refused(trained, tiny_model_dir, tmp_path):
    target = trained.save_pretrained(tmp_path / "ckpt")
    other = tiny_model_dir("llama", seed=1)
    with pytest.raises(CheckpointError, match="weight fingerprint mismatch.*embed_tokens"):
        AugmentedModel.from_pretrained(target, base=other)
    loaded = AugmentedModel.from_pretrained(target, dtype=torch.bfloat16)  # a dtype change passes
    assert loaded.base.dtype == torch.bfloat16


def test_vocab_size_is_part_of_the_fingerprint(tiny_model_dir):
    from toolkit.testing import tiny_config

    a, b = tiny_config("llama"), tiny_config("llama")
    b.vocab_size = a.vocab_size + 1
    assert checkpoint.fingerprint(a)["keys"]["vocab_size"] == a.vocab_size
    assert checkpoint.fingerprint(a)["sha256"] != checkpoint.fingerprint(b)["sha256"]


CONFIG_EDITS = {
    "newer format": (lambda c: c.update(format_version=99),
                     "format_version 99, newer than this toolkit reads \\(up to 3\\)"),
    "no format": (lambda c: c.pop("format_version"), "format_version=None is not a format"),
    "missing head.level": (lambda c: c["graft"]["head"].pop("level"),
                           "lacks graft.head.level"),
    "missing head": (lambda c: c["graft"].pop("head"), "lacks graft.head;"),
    "unknown graft key": (lambda c: c["graft"].update(extra=1), "unknown key graft.extra"),
    "unknown decoding key": (lambda c: c["decoding"]["sled"].update(alpha=1),
                             "unknown key decoding.sled.alpha"),
    "bad level": (lambda c: c["graft"]["head"].update(level="word"),
                  "head.level='word' is not allowed"),
    "wrong type": (lambda c: c["graft"]["head"].update(hidden_size="big"),
                   "bad value for graft.head.hidden_size"),
    "nan temperature": (lambda c: c["graft"]["head"].update(temperatures=[float("nan")]),
                        "not a finite number"),
    "no files": (lambda c: c.pop("files"), "lacks files"),
    "unknown top-level key": (lambda c: c.update(extra=1), "unknown key\\(s\\) extra"),
}


@pytest.mark.parametrize("case", list(CONFIG_EDITS))
def test_augment_config_is_validated_like_a_recipe(trained, tmp_path, case):
    edit, message = CONFIG_EDITS[case]
    target = trained.save_pretrained(tmp_path / "ckpt")
    _edit_config(target, edit)
    with pytest.raises(CheckpointError, match=message):
        AugmentedModel.from_pretrained(target)


def test_format_1_checkpoints_still_load(trained, tmp_path):
    target = trained.save_pretrained(tmp_path / "ckpt")

    def to_format_1(config):
        config.update(format_version=1)
        config.pop("files")
        config.pop("weight_fingerprint")

    _edit_config(target, to_format_1)
    loaded = AugmentedModel.from_pretrained(target)
    assert loaded.graft_config == trained.graft_config
    assert loaded.decoding == trained.decoding


def _rewrite_head(target, tensors) -> None:
    """Replace head.safetensors and update its hash, as if the checkpoint was saved with it."""
    from safetensors.torch import save_file

    from toolkit.graft import integrity

    save_file(tensors, str(target / "head.safetensors"))
    config = json.loads((target / "augment_config.json").read_text())
    config["files"] = integrity.file_hashes(target, skip="augment_config.json")
    (target / "augment_config.json").write_text(json.dumps(config))


def test_the_grid_lives_in_the_config_and_a_grid_tensor_in_the_head_is_refused(trained, tmp_path):
    from safetensors.torch import load_file

    target = trained.save_pretrained(tmp_path / "ckpt")
    weights = load_file(str(target / "head.safetensors"))
    assert "temperatures" not in weights
    _rewrite_head(target, {**weights, "temperatures": trained.head.temperatures.clone()})
    with pytest.raises(CheckpointError, match=r"unexpected keys \['temperatures'\]"):
        AugmentedModel.from_pretrained(target)
