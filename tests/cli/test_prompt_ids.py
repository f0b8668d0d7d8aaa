"""Prompt records that give their token ids directly (`prompt_ids`, no text), as docs/DESIGN.md
documents for prompt files: `generate` decodes exactly those ids, `collect` collects on them,
and ids outside the vocabulary are one line before the model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from toolkit.cli.main import main
from toolkit.graft.augmented import AugmentedModel
from toolkit.recipes.load import load_recipe

IDS = [[1, 45, 49], [5, 6, 7, 8, 9], [200]]


@pytest.fixture(scope="module")
def ckpt(tiny_llama_dir, tmp_path_factory) -> Path:
    from _generation import graft

    return graft(tiny_llama_dir).save_pretrained(tmp_path_factory.mktemp("ids") / "ckpt")


def _setup(tmp: Path, ckpt: Path, lines: list[dict]) -> Path:
    (tmp / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    recipe = tmp / "r.yaml"
    recipe.write_text(f"work_dir: {tmp}/work\nmodel:\n  path: {ckpt}\ndecoding:\n  "
                      "max_new_tokens: 5\n")
    return recipe


def test_generate_decodes_the_given_ids_as_am_generate_does(ckpt, tmp_path, capsys):
    lines = [{"id": "a", "prompt_ids": IDS[0]}, {"prompt": "hello there"},
             {"prompt_ids": IDS[1]}, {"prompt_ids": IDS[2], "note": 1}]
    recipe = _setup(tmp_path, ckpt, lines)
    out = tmp_path / "out.jsonl"
    argv = ["generate", str(recipe), f"generate.input={tmp_path}/in.jsonl",
            f"generate.output={out}", "generate.batch_size=1"]
    assert main(argv) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    am = AugmentedModel.from_pretrained(ckpt)
    decoding = load_recipe(recipe).decoding
    for line, row in zip([lines[0], *lines[2:]], [rows[0], *rows[2:]], strict=True):
        ids = torch.tensor([line["prompt_ids"]])
        reply = am.generate(ids, torch.ones_like(ids), decoding=decoding)[0, ids.shape[1]:]
        assert row == {**line, "completion": am.tokenizer.decode(reply, skip_special_tokens=True),
                       "finish_reason": "length", "empty": False,
                       "prompt_tokens": len(line["prompt_ids"]),
                       "completion_tokens": len(reply), "temperature": None}
    assert rows[1]["prompt"] == "hello there" and rows[1]["completion"]


def test_generate_refuses_ids_outside_the_vocabulary_before_loading(ckpt, tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.setattr("toolkit.recipes.models._load_local",
                        lambda *a, **k: pytest.fail("a model was loaded"))
    recipe = _setup(tmp_path, ckpt, [{"prompt_ids": [5]}, {"prompt_ids": [5, 300]}])
    capsys.readouterr()
    assert main(["generate", str(recipe), f"generate.input={tmp_path}/in.jsonl"]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path}/in.jsonl:2: prompt_ids holds token id 300, outside the model's "
        "vocabulary (0..299); the ids were made for another tokenizer\n")


def test_collect_takes_prompt_ids_alone(ckpt, tmp_path, capsys, monkeypatch):
    (tmp_path / "ids_reward.py").write_text(
        "def score(prompt, reply, record):\n    return float(sum(map(ord, reply)))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = _setup(tmp_path, ckpt, [{"id": str(i), "prompt_ids": ids} for i, ids in
                                     enumerate(IDS)])
    pairs = tmp_path / "pairs.jsonl"
    argv = ["collect", str(recipe), f"data.prompts={tmp_path}/in.jsonl", f"data.pairs={pairs}",
            "collect.num_replies=3", "collect.max_new_tokens=4", "collect.reward.kind=function",
            "collect.reward.function=ids_reward:score"]
    assert main(argv) == 0, capsys.readouterr().err
    written = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert [(p["id"], p["prompt_ids"]) for p in written] == [(str(i), ids) for i, ids in
                                                             enumerate(IDS)]


def test_the_batching_loop_refuses_ids_outside_the_vocabulary(ckpt):
    from toolkit.core.errors import DataError
    from toolkit.graft.batching import generate_replies
    from toolkit.methods.options import DecodingConfig

    am = AugmentedModel.from_pretrained(ckpt)
    with pytest.raises(DataError) as refused:
        generate_replies(am, ["hello", [5, -1]], DecodingConfig(max_new_tokens=2), 2)
    assert str(refused.value) == ("prompt 2: prompt_ids holds token id -1, outside the model's "
                                  "vocabulary (0..299); the ids were made for another tokenizer")
