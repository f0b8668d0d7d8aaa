"""Hub ids (`org/name`) as model sources, through huggingface_hub (faked here: no network);
offline with nothing cached, one clear line (also exit 2 from the CLI)."""

from __future__ import annotations

import json

import huggingface_hub
import pytest
import torch
from _generation import prompt_batch, small_graft

from toolkit import hub
from toolkit.cli.main import main
from toolkit.errors import CheckpointError
from toolkit.graft.augmented import AugmentedModel
from toolkit.recipes import load_recipe
from toolkit.recipes.models import load_model


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


def test_hub_id_detection(tmp_path):
    assert hub.is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not hub.is_hub_id("gpt2")  # a bare name is a local path
    assert not hub.is_hub_id("./org/name") and not hub.is_hub_id("/models/org/name")
    assert not hub.is_hub_id("a/b/c")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not hub.is_hub_id(str(tmp_path / "org" / "name"))


def test_graft_save_and_reload_keep_the_hub_id(fake_hub, tmp_path):
    repos, calls = fake_hub
    am = AugmentedModel.graft("org/tiny-llama", small_graft())
    assert am.base_reference == "org/tiny-llama" and am.tokenizer is not None
    assert calls[0][1]["allow_patterns"] == hub.PATTERNS
    ckpt = am.save_pretrained(tmp_path / "ckpt")
    assert json.loads((ckpt / "augment_config.json").read_text())["base"] == "org/tiny-llama"
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
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(CheckpointError) as info:
        AugmentedModel.graft("org/not-cached")
    message = str(info.value)
    assert "\n" not in message
    assert "give a local model directory" in message
    assert "huggingface-cli download org/not-cached" in message
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"work_dir: {tmp_path}/w\nmodel:\n  path: org/not-cached\n")
    code = main(["generate", str(recipe), "generate.prompts=[hi]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "cannot get 'org/not-cached' from the Hugging Face Hub" in err[-1]
