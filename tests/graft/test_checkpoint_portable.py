"""Checkpoints travel: the base is referred to by preset name, Hub id or a path relative to the
checkpoint (with its fingerprint); PEFT's `from_pretrained(base, ckpt)`; `push_to_hub` through
huggingface_hub (a fake HfApi, never the network); `AutoModelForCausalLM` on a checkpoint says
which call to use."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from _generation import prompt_batch

from toolkit.core.errors import CheckpointError
from toolkit.graft.augmented import AugmentedModel
from toolkit.methods.options import GraftConfig, HeadConfig

PRESET = "smollm2-135m-instruct"


def _graft(base) -> AugmentedModel:
    am = AugmentedModel.graft(base, GraftConfig(head=HeadConfig(hidden_size=16)))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in am.head.parameters():
            p.normal_(0, 0.5)
    return am


def _base_ref(ckpt: Path) -> str:
    return json.loads((ckpt / "augment_config.json").read_text())["base"]


def _same(a: AugmentedModel, b: AugmentedModel) -> None:
    ids, mask = prompt_batch(a.tokenizer)
    assert torch.equal(a.generate(ids, mask, adaptive_temperature=True, max_new_tokens=5),
                       b.generate(ids, mask, adaptive_temperature=True, max_new_tokens=5))


def test_checkpoint_and_base_move_together(tiny_llama_dir, tmp_path):
    shutil.copytree(tiny_llama_dir, tmp_path / "here" / "models" / "tiny")
    am = _graft(str(tmp_path / "here" / "models" / "tiny"))
    ckpt = am.save_pretrained(tmp_path / "here" / "runs" / "ckpt")
    assert _base_ref(ckpt) == "path:../../models/tiny"
    shutil.move(tmp_path / "here", tmp_path / "there")
    moved = AugmentedModel.from_pretrained(tmp_path / "there" / "runs" / "ckpt")
    assert moved.base_reference == str((tmp_path / "there" / "models" / "tiny").resolve())
    _same(am, moved)


def test_a_preset_base_is_stored_by_name(tiny_llama_dir, tmp_path, monkeypatch):
    from toolkit.sources.presets import prepare_preset

    for cache in ("cache-a", "cache-b"):
        shutil.copytree(tiny_llama_dir, tmp_path / cache / PRESET)
    monkeypatch.setenv("SURGERY_CACHE", str(tmp_path / "cache-a"))
    am = _graft(str(prepare_preset(PRESET)))
    ckpt = am.save_pretrained(tmp_path / "ckpt")
    assert _base_ref(ckpt) == f"preset:{PRESET}"
    monkeypatch.setenv("SURGERY_CACHE", str(tmp_path / "cache-b"))  # another machine's cache
    shutil.rmtree(tmp_path / "cache-a")
    loaded = AugmentedModel.from_pretrained(ckpt)
    assert loaded.base_reference == str((tmp_path / "cache-b" / PRESET).resolve())
    _same(am, loaded)


def test_format_2_absolute_base_still_loads(tiny_llama_dir, tmp_path):
    am = _graft(str(tiny_llama_dir))
    ckpt = am.save_pretrained(tmp_path / "ckpt")
    path = ckpt / "augment_config.json"
    config = json.loads(path.read_text())
    config.update(format_version=2, base=str(Path(tiny_llama_dir).resolve()))
    path.write_text(json.dumps(config))
    _same(am, AugmentedModel.from_pretrained(ckpt))


def test_peft_style_base_then_checkpoint(tiny_llama_dir, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    am = _graft(str(tiny_llama_dir))
    ckpt = am.save_pretrained(tmp_path / "ckpt")
    loaded_base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    _same(am, AugmentedModel.from_pretrained(loaded_base, ckpt))
    _same(am, AugmentedModel.from_pretrained(str(tiny_llama_dir), ckpt))
    other = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir("llama", seed=1)))
    with pytest.raises(CheckpointError, match="weight fingerprint mismatch"):
        AugmentedModel.from_pretrained(other, ckpt)
    with pytest.raises(CheckpointError, match="the base is given twice"):
        AugmentedModel.from_pretrained(loaded_base, ckpt, base=loaded_base)


def test_auto_model_names_the_call_to_use(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    ckpt = _graft(str(tiny_llama_dir)).save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"load it with toolkit\.AugmentedModel\.from_pretrained") as err:
        AutoModelForCausalLM.from_pretrained(str(ckpt))
    assert isinstance(err.value, CheckpointError)  # ours, first: not transformers' upgrade advice
    assert str(err.value) == (
        f"{ckpt} is a model-surgery checkpoint (a decoding head and its settings over a base "
        f"model, not a model of its own): load it with "
        f"toolkit.AugmentedModel.from_pretrained({str(ckpt)!r})")


class FakeApi:
    """HfApi's create_repo / upload_folder, into a local folder per repo."""

    remote: Path
    calls: list = []
    fail: Exception | None = None

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=None, exist_ok=False, repo_type=None):
        if FakeApi.fail:
            raise FakeApi.fail
        FakeApi.calls.append(("create_repo", repo_id, private, exist_ok, repo_type))

    def upload_folder(self, repo_id, folder_path, repo_type=None, revision=None,
                      commit_message=None):
        FakeApi.calls.append(("upload_folder", repo_id, revision, commit_message))
        shutil.copytree(folder_path, FakeApi.remote / repo_id, dirs_exist_ok=True)
        return f"https://huggingface.co/{repo_id}/commit/0"


@pytest.fixture
def fake_api(tmp_path, monkeypatch):
    import tempfile

    import huggingface_hub

    FakeApi.remote, FakeApi.calls, FakeApi.fail = tmp_path / "remote", [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the staging folder goes
    return FakeApi


def test_push_to_hub_uploads_a_loadable_checkpoint(tiny_llama_dir, tmp_path, fake_api):
    am = _graft(str(tiny_llama_dir))
    with pytest.raises(CheckpointError, match="base is the local directory .*self_contained=True"):
        am.push_to_hub("org/ckpt")
    assert fake_api.calls == []
    info = am.push_to_hub("org/ckpt", self_contained=True, private=True, token="t")
    assert info == "https://huggingface.co/org/ckpt/commit/0"
    assert fake_api.calls == [("create_repo", "org/ckpt", True, True, "model"),
                              ("upload_folder", "org/ckpt", None,
                               "Upload model-surgery checkpoint")]
    assert not list(tmp_path.glob("surgery-push-*")), "the staging folder was left behind"
    _same(am, AugmentedModel.from_pretrained(fake_api.remote / "org" / "ckpt"))


def test_push_to_hub_of_a_hub_based_graft_refers_to_the_hub(tiny_llama_dir, fake_api):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    base.name_or_path = "org/tiny-base"
    am = _graft(base)
    am.push_to_hub("org/ckpt")
    assert _base_ref(fake_api.remote / "org" / "ckpt") == "hub:org/tiny-base"
    assert not (fake_api.remote / "org" / "ckpt" / "base").exists()
    fake_api.fail = OSError("401 Client Error: Unauthorized\nmore detail")
    with pytest.raises(CheckpointError, match=r"cannot push to org/ckpt .*\(401 Client Error: "
                                              r"Unauthorized\); check the repo id"):
        am.push_to_hub("org/ckpt")


def test_relative_reference_is_relative_to_the_checkpoint(tiny_llama_dir, tmp_path,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    am = _graft(os.path.relpath(tiny_llama_dir, tmp_path))
    ckpt = am.save_pretrained("ckpt")
    expected = os.path.relpath(Path(tiny_llama_dir).resolve(), ckpt)
    assert _base_ref(ckpt) == f"path:{expected}"
    monkeypatch.chdir(tiny_llama_dir)
    _same(am, AugmentedModel.from_pretrained(tmp_path / "ckpt"))
