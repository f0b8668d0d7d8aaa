"""The lm-eval backend's model_args are as strict as stock `hf`'s: an unknown key is one line
naming it and the valid keys, `dtype` reaches the model, a plugin method is usable from the
lm-eval CLI (`imports=`), the results record every arg as given, and a checkpoint whose base is
an instruct model still gets lm-eval's chat-template advice."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from toolkit.core.errors import ConfigError  # noqa: E402
from toolkit.eval import harness  # noqa: E402
from toolkit.eval.lm_eval_tasks import write_tasks  # noqa: E402
from toolkit.graft.augmented import AugmentedModel  # noqa: E402
from toolkit.methods import registry  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MC_ITEMS = [{"question": "Which is a colour?", "best": "Red.", "true": ["Red.", "Blue."],
             "false": ["Seven.", "A river."]}]


@pytest.fixture(scope="module")
def ckpt(tiny_llama_dir, tmp_path_factory):
    am = AugmentedModel.graft(str(tiny_llama_dir))
    return am.save_pretrained(tmp_path_factory.mktemp("args") / "ckpt")


@pytest.fixture
def restored(monkeypatch):
    saved = dict(registry._METHODS)
    yield
    registry._METHODS.clear()
    registry._METHODS.update(saved)
    sys.modules.pop("toy_mix_registered", None)


@pytest.mark.parametrize("key, line", [
    ("foo_bar", r"unknown model_args key 'foo_bar' for --model surgery; valid: pretrained, "
                r"preset, shared_prefix, imports, sled, sled_evolution_rate"),
    ("sledd", r"unknown model_args key 'sledd' \(did you mean sled\?\)"),
    ("peft", r"model_args peft=1 is not supported by the surgery backend: it loads the model "
             r"itself"),
])
def test_a_key_nothing_takes_is_refused_before_anything_loads(key, line):
    with pytest.raises(ConfigError, match=line):
        harness.SurgeryLM(pretrained="/no/such/model", device="cpu", **{key: 1})


def test_dtype_reaches_the_model(ckpt):
    lm = harness.SurgeryLM(pretrained=str(ckpt), dtype="bfloat16", device="cpu")
    assert lm.model.dtype == torch.bfloat16 and lm.am.base.dtype == torch.bfloat16
    assert lm.get_model_info()["model_dtype"] == torch.bfloat16
    with pytest.raises(ConfigError, match=r"dtype='bf16' is not a dtype; allowed: auto, "
                                          r"bfloat16, float16, float32, float64"):
        harness.SurgeryLM(pretrained=str(ckpt), dtype="bf16", device="cpu")


def _cli(model_args: str, tmp_path, monkeypatch, capsys) -> tuple[int, str, Path]:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tasks = write_tasks(MC_ITEMS, tmp_path / "tasks")
    out = tmp_path / "results"
    monkeypatch.setattr(sys, "argv", [
        "surgery-lm-eval", "run", "--model", "surgery", "--model_args", model_args,
        "--include_path", str(tasks), "--tasks", "truthfulqa_mc2_local", "--device", "cpu",
        "--batch_size", "2", "--output_path", str(out)])
    code = harness.main()
    return code, capsys.readouterr().err, out


def test_the_lm_eval_cli_refuses_an_unknown_key_in_one_line(ckpt, tmp_path, monkeypatch,
                                                              capsys):
    code, err, out = _cli(f"pretrained={ckpt},sledd=True,foo_bar=1,dtype=bfloat16", tmp_path,
                          monkeypatch, capsys)
    assert code == 2
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert line.startswith("error: unknown model_args key 'sledd' (did you mean sled?)")
    assert "Traceback" not in err and not out.exists()


def _registering_module(root: Path) -> None:
    page = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    example = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    (root / "toy_mix_registered.py").write_text(
        example + "\nfrom toolkit.methods import register\n\nregister(METHOD)\n")


def test_a_plugin_from_imports_runs_from_the_lm_eval_cli_and_results_record_every_arg(
        ckpt, tmp_path, monkeypatch, capsys, restored):
    _registering_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    given = (f"pretrained={ckpt},imports=toy_mix_registered,layer_mix=True,"
             "layer_mix_weight=1.5,dtype=float32")
    code, err, out = _cli(given, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert "INFO     [surgery] surgery: layer_mix=True,layer_mix_weight=1.5" in err
    for note in harness.HFLM_NOTES:  # HFLM's notes on a model passed in do not apply
        assert note not in err
    [result] = out.glob("*/results_*.json")
    config = json.loads(result.read_text())["config"]
    assert config["surgery"]["method"] == "layer_mix"
    assert config["surgery"]["options"]["weight"] == 1.5
    assert config["model_args"].startswith(given + ",")
    assert "batch_size=2" in config["model_args"].split(",")
    assert config["model_dtype"] == "torch.float32"


def test_a_checkpoint_on_an_instruct_base_keeps_the_chat_template_advice(
        tiny_llama_dir, tmp_path_factory, caplog):
    import shutil

    tmp_path = tmp_path_factory.mktemp("advice")  # a name without "inst", as lm-eval checks
    base = tmp_path / "Tiny-Instruct"
    shutil.copytree(tiny_llama_dir, base)
    ckpt = AugmentedModel.graft(str(base)).save_pretrained(tmp_path / "ckpt")
    with caplog.at_level(logging.WARNING, logger="toolkit.eval.harness"):
        harness.SurgeryLM(pretrained=str(ckpt), device="cpu")
    assert f"is grafted onto {base}, an instruct or chat variant: without " \
           "--apply_chat_template" in caplog.text
