"""A tokenizer whose tokenizer_config.json names custom code (`auto_map`) is refused with one
line naming the file and the fix, and its code never runs; an `auto_map` beside a tokenizer
class transformers ships loads that class, as transformers does with remote code off."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import PreTrainedTokenizerFast

from toolkit.cli.main import main
from toolkit.core.errors import CheckpointError
from toolkit.sources.tokenizer_files import load_tokenizer


def _with_auto_map(tiny, tmp_path, tokenizer_class):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    path = model / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    config.pop("tokenizer_class", None)
    if tokenizer_class:
        config["tokenizer_class"] = tokenizer_class
    path.write_text(json.dumps(config))
    marker = tmp_path / "marker"
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return model, marker


def _line(model) -> str:
    return (f"{model / 'tokenizer_config.json'} names custom tokenizer code (auto_map), which this "
            "toolkit never runs; set its tokenizer_class to a tokenizer transformers ships (e.g. "
            "PreTrainedTokenizerFast) and delete auto_map, or use a model whose tokenizer needs "
            "no code")


@pytest.mark.parametrize("tokenizer_class", ["EvilTokenizer", None])
def test_auto_map_is_one_line_and_runs_no_code(tiny_llama_dir, tmp_path, tokenizer_class):
    model, marker = _with_auto_map(tiny_llama_dir, tmp_path, tokenizer_class)
    with pytest.raises(CheckpointError) as caught:
        load_tokenizer(model)
    assert str(caught.value) == _line(model)
    assert not marker.exists()


def test_auto_map_beside_a_shipped_class_loads_that_class(tiny_llama_dir, tmp_path):
    model, marker = _with_auto_map(tiny_llama_dir, tmp_path, "PreTrainedTokenizerFast")
    tokenizer = load_tokenizer(model)
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert tokenizer("hello")["input_ids"] == load_tokenizer(tiny_llama_dir)("hello")["input_ids"]
    assert not marker.exists()


def test_cli_gives_one_line_and_exit_2(tiny_llama_dir, tmp_path, capsys):
    model, marker = _with_auto_map(tiny_llama_dir, tmp_path, "EvilTokenizer")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp_path}/out\nmodel:\n  path: {model}\n")
    code = main(["generate", str(recipe), "generate.prompts=[hello]"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip().splitlines()[-1] == f"error: {_line(model)}"
    assert "Traceback" not in err and not marker.exists()
