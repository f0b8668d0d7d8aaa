"""Refusals that used to be a traceback or the wrong reason, run through `main`: one `error:`
line naming the real reason, exit code 2, no byte of the user's files changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from toolkit.cli.main import main

PAIRS = '{"id": "0", "prompt_ids": [5, 6], "chosen_ids": [7], "rejected_ids": [8], ' \
        '"chosen_tau": [0], "rejected_tau": [5]}\n'


def _recipe(tmp: Path, model: Path, extra: str = "") -> Path:
    recipe = tmp / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp}/out\nwork_dir: {tmp}/work\nmodel:\n  path: {model}\n"
                      f"graft:\n  head:\n    hidden_size: 16\n{extra}")
    return recipe


def _refused(capsys, argv: list[str]) -> str:
    """The one `error:` line of a run that must exit 2 with nothing else on stderr."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    return err.rstrip("\n")


@pytest.mark.parametrize("command", ["train", "run"])
def test_a_nul_byte_in_trainer_ckpt_path(command, tiny_llama_dir, tmp_path, capsys):
    (tmp_path / "pairs.jsonl").write_text(PAIRS)
    recipe = _recipe(tmp_path, tiny_llama_dir, f'trainer:\n  ckpt_path: "{tmp_path}/a\\0b.ckpt"\n')
    pairs = f"data.pairs={tmp_path}/pairs.jsonl" if command == "train" else "data.pairs=p.jsonl"
    line = _refused(capsys, [command, str(recipe), pairs])
    assert line == (f"error: trainer.ckpt_path='{tmp_path}/a\\x00b.ckpt' holds a NUL byte "
                    "(\\0), which no file name or option value can hold; remove it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl", "recipe.yaml"]


def test_a_nul_byte_in_a_prompt_is_text_not_a_refusal(tmp_path):
    from toolkit.recipes.load import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text('model:\n  tiny: llama\ngenerate:\n  prompts: ["a\\0b"]\n')
    assert load_recipe(recipe).generate.prompts == ["a\0b"]


def test_a_recipe_of_11000_inline_prompts_loads(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {tiny: llama}\ngenerate:\n  prompts: [" + ", ".join(
        f"p{i}" for i in range(11_000)) + "]\n")
    assert main(["generate", str(recipe), "--print-config"]) == 0
    assert "- p10999\n" in capsys.readouterr().out


def test_a_recipe_past_the_node_limit_names_the_limit(tmp_path, capsys, monkeypatch):
    from toolkit.recipes import load

    monkeypatch.setattr(load, "MAX_YAML_NODES", 50)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {tiny: llama}\ngenerate:\n  prompts: [" + ", ".join(
        f"p{i}" for i in range(60)) + "]\n")
    assert _refused(capsys, ["generate", str(recipe)]) == (
        f"error: recipe {recipe} holds more than 50 YAML nodes (aliases expanded), the most a "
        "recipe takes; put long prompt lists in a JSONL file (generate.input) instead")


def test_yaml_alias_bombs_are_refused_as_such(tmp_path, capsys):
    """Ten levels of ten aliases (10**10 nodes) pass no limit; four levels (12,353 nodes from
    23 written) pass the node limit but not the expansion ratio."""
    for levels, expected in ((10, "holds more than 50000 YAML nodes"),
                             (4, "its YAML aliases expand it from 23 nodes to 12353 nodes, more "
                                 "than 100 times the nodes written; write the repeated values out")):
        recipe = tmp_path / f"bomb{levels}.yaml"
        recipe.write_text("model: {tiny: llama}\n" + "".join(
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}' if i else 'x'] * 10)}]\n"
            for i in range(levels)))
        assert expected in _refused(capsys, ["generate", str(recipe)])


def test_a_checkpoint_left_between_the_two_renames_of_a_save_is_found(tiny_llama_dir, tmp_path,
                                                                     capsys):
    """A kill after a save's first rename (where renameat2 is missing) leaves the old checkpoint
    as `.ckpt.old-PID-RAND` and the new one as `.ckpt.partial-PID-RAND`, no `ckpt`: loading
    puts the old one back, and the CLI's checks before loading now do the same instead of
    calling model.path missing."""
    from _generation import graft

    target = graft(tiny_llama_dir).save_pretrained(tmp_path / "ckpt")
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
    os.rename(target, tmp_path / ".ckpt.old-999999-0123abcd")
    (tmp_path / ".ckpt.partial-999999-0123abcd").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"work_dir: {tmp_path}/work\nmodel:\n  path: {target}\ndecoding:\n  "
                      "max_new_tokens: 3\ngenerate:\n  prompts: [hello]\n")
    capsys.readouterr()
    assert main(["generate", str(recipe)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "r.yaml"]
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == files
