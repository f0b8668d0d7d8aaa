"""Hub ids (`org/name`) as model sources, through huggingface_hub (faked here: no network);
offline with nothing cached, one clear line (also exit 2 from the CLI)."""

from __future__ import annotations

import json

import huggingface_hub
import pytest
import torch
from _generation import prompt_batch, small_graft

from toolkit.cli.main import main
from toolkit.core.errors import CheckpointError
from toolkit.graft.augmented import AugmentedModel
from toolkit.recipes import load_recipe
from toolkit.recipes.models import load_model
from toolkit.sources import hub


@pytest.fixture
def fake_hub(monkeypatch, tiny_llama_dir, tmp_path):
    """snapshot_download that serves 'org/tiny-llama' from the tiny model dir and
    'org/our-ckpt' from a saved checkpoint; records its calls."""
    repos = {"org/tiny-llama": str(tiny_llama_dir)}
    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        if repo_id not in repos:
            raise huggingface_hub.errors.RepositoryNotFoundError(f"404 {repo_id}")
        return repos[repo_id]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return repos, calls


def test_hub_id_detection(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub.is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert hub.is_hub_id("gpt2")  # a single-name (legacy canonical) id
    assert hub.is_hub_id("org/name@v1.0") and hub.split_id("org/name@v1.0") == ("org/name", "v1.0")
    assert not hub.is_hub_id("./org/name") and not hub.is_hub_id("/models/org/name")
    assert not hub.is_hub_id("~/models/x") and not hub.is_hub_id("a/b/c")
    assert not hub.is_hub_id("org--x/name") and not hub.is_hub_id("org/name@")
    # the path rules win: a toolkit folder, or a parent that exists here, is a local path
    assert not hub.is_hub_id("checkpoints/tiny") and not hub.is_hub_id("runs/x")
    (tmp_path / "models").mkdir()
    assert not hub.is_hub_id("models/typo") and hub.is_hub_id("other/typo")
    (tmp_path / "gpt2").mkdir()
    assert not hub.is_hub_id("gpt2")  # an existing folder is never a Hub id
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not hub.is_hub_id(str(tmp_path / "org" / "name"))


@pytest.mark.parametrize("value", ["checkpoints/tiny", "models/tiny", "./tiny", "/nowhere/tiny",
                                   "~/nowhere-tiny", "a/b/c"])
def test_a_path_that_does_not_exist_is_not_sent_to_the_hub(value, fake_hub, tmp_path,
                                                           monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"work_dir: {tmp_path}/w\nmodel:\n  path: {value}\n")
    code = main(["generate", str(recipe), "generate.prompts=[hi]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert fake_hub[1] == []
    assert code == 2 and len(err) == 1 and "does not exist (written as a local path, so not looked up on the Hub)" in err[0], err
    with pytest.raises(CheckpointError, match="no model directory exists"):
        AugmentedModel.graft(value)
    assert fake_hub[1] == []


def test_single_names_and_revisions_reach_the_hub(fake_hub, tmp_path, monkeypatch):
    repos, calls = fake_hub
    monkeypatch.chdir(tmp_path)
    repos["gpt2"] = repos["org/tiny-llama"]
    assert AugmentedModel.graft("gpt2", small_graft()).base_reference == "gpt2"
    with pytest.raises(CheckpointError) as info:
        AugmentedModel.graft("org/missing@v2")
    assert [(c[0], c[1]["revision"]) for c in calls] == [("gpt2", None), ("org/missing", "v2")]
    assert "hf download org/missing --revision v2" in str(info.value)


def test_the_quoted_reason_is_cut_at_a_word(fake_hub, monkeypatch):
    def fail(repo_id, **kwargs):
        raise OSError("word " * 100)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(CheckpointError) as info:
        AugmentedModel.graft("org/x")
    assert "(word word" in str(info.value) and "word ...); give a local" in str(info.value)


def test_graft_save_and_reload_keep_the_hub_id(fake_hub, tmp_path):
    repos, calls = fake_hub
    am = AugmentedModel.graft("org/tiny-llama", small_graft())
    assert am.base_reference == "org/tiny-llama" and am.tokenizer is not None
    assert calls[0][1]["allow_patterns"] == hub.PATTERNS
    ckpt = am.save_pretrained(tmp_path / "ckpt")
    assert json.loads((ckpt / "augment_config.json").read_text())["base"] == "hub:org/tiny-llama"
    again = AugmentedModel.from_pretrained(ckpt)
    assert [c[0] for c in calls] == ["org/tiny-llama", "org/tiny-llama"]
    ids, mask = prompt_batch(am.tokenizer)
    assert torch.equal(again.generate(ids, mask, sled=True, max_new_tokens=6),
                       am.generate(ids, mask, sled=True, max_new_tokens=6))
    repos["org/our-ckpt"] = str(ckpt)
    from_hub = AugmentedModel.from_pretrained("org/our-ckpt")
    assert all(torch.equal(from_hub.head.state_dict()[k], v)
               for k, v in am.head.state_dict().items())


def test_recipe_model_path_accepts_a_hub_id(fake_hub, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  path: org/tiny-llama\ngraft:\n  head:\n    hidden_size: 16\n")
    lines = []
    am = load_model(load_recipe(recipe).model, load_recipe(recipe).graft, say=lines.append)
    assert am.base_reference == "org/tiny-llama"
    assert any("fetching org/tiny-llama" in line for line in lines)


def test_offline_with_nothing_cached_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(CheckpointError) as info:
        AugmentedModel.graft("org/not-cached")
    message = str(info.value)
    assert "\n" not in message
    assert "give a local model directory" in message
    assert "hf download org/not-cached)" in message
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"work_dir: {tmp_path}/w\nmodel:\n  path: org/not-cached\n")
    code = main(["generate", str(recipe), "generate.prompts=[hi]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "no local directory 'org/not-cached' exists, and the Hugging Face Hub" in err[-1]
