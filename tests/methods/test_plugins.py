"""A decoding method from another package, driven through every surface a built-in reaches.

The toy method is the example of docs/plugins.md (read from the page), installed into a temp
dir as a package with a `model_surgery.methods` entry point (a dist-info folder on the path),
or as a module a recipe's `imports:` names. Nothing in this repository names it.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _generation import early_logits, graft, prompt_batch, reference_generate
from transformers import AutoModelForCausalLM

from toolkit import methods
from toolkit.bench import BenchConfig
from toolkit.core.errors import ConfigError
from toolkit.graft.augmented import AugmentedModel
from toolkit.methods import registry
from toolkit.methods.options import DecodingConfig, mode_decoding, with_overrides
from toolkit.recipes.load import load_recipe

ROOT = Path(__file__).resolve().parents[2]
NAME = "layer_mix"


def _example() -> str:
    page = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    return re.search(r"```python\n(.*?)```", page, re.S).group(1)


def _write_package(root: Path) -> Path:
    """toy_layer_mix: the docs example as an installed distribution with an entry point."""
    (root / "toy_layer_mix").mkdir(parents=True)
    (root / "toy_layer_mix" / "__init__.py").write_text(_example())
    info = root / "toy_layer_mix-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-layer-mix\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{methods.ENTRY_POINT_GROUP}]\n{NAME} = toy_layer_mix:METHOD\n")
    return root


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return _write_package(tmp_path_factory.mktemp("plugin"))


@pytest.fixture
def plugin(package, monkeypatch):
    """The entry-point plugin loaded into this process; the registry is restored afterwards."""
    saved = dict(registry._METHODS)
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    yield methods.get(NAME)
    registry._METHODS.clear()
    registry._METHODS.update(saved)
    sys.modules.pop("toy_layer_mix", None)


@pytest.fixture(scope="module")
def am(tiny_llama_dir):
    return graft(tiny_llama_dir)


def _mixed(final, early, weight):
    return final + weight * (final - early.mean(dim=1))


def test_generate_equals_a_step_by_step_reference(plugin, am, tiny_llama_dir):
    ids, mask = prompt_batch(am.tokenizer)
    out = am.generate(ids, attention_mask=mask, layer_mix={"weight": 1.5}, max_new_tokens=6,
                      do_sample=False, return_records=True)
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    layers = am.tap.candidate_layers
    want = reference_generate(plain, ids, mask, 6, lambda final, hidden: _mixed(
        final, early_logits(plain, hidden, layers), 1.5).argmax(-1))
    assert torch.equal(out.sequences, want)
    greedy = am.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert not torch.equal(greedy, want), "the toy method must change the replies to be seen"
    shift = out.records[NAME + "_shift"]
    assert shift.shape == (3, 6) and bool((shift > 0).all())
    assert out.record(NAME + "_shift") is shift and out.record("dola_layer") is None
    assert out.layers == layers


def test_config_overrides_modes_and_exclusions(plugin):
    assert DecodingConfig().method(NAME) == plugin.options()
    options = with_overrides(None, layer_mix=2.0 if plugin.shorthand else {"weight": 2.0})
    assert options.method(NAME).enabled and options.method(NAME).weight == 2.0
    assert [m.name for m in methods.active(options)] == [NAME]
    assert NAME in methods.scoring_modes() and NAME in methods.generation_modes()
    assert mode_decoding(DecodingConfig(), NAME).method(NAME).enabled
    assert BenchConfig(modes=[NAME]).mode_names() == ["greedy", "floor", NAME]
    with pytest.raises(ConfigError, match="enable at most one"):
        with_overrides(options, sled=True)
    with pytest.raises(ConfigError, match="unknown layer_mix option 'wieght'; valid: enabled, "
                                          "weight, layers"):
        with_overrides(None, layer_mix={"wieght": 1})


def test_the_documented_plan_of_a_call(plugin):
    """docs/plugins.md's `plan` snippet (its second Python block), run as written."""
    page = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    scope: dict = {}
    exec(re.findall(r"```python\n(.*?)```", page, re.S)[1], scope)
    steps = scope["steps"]
    assert (steps.logits.method.name, steps.logits.layers) == (NAME, None)
    assert [s.method.name for s in steps.filters] == ["top_n_sigma"]
    assert steps.temperature is None and steps.do_sample


def test_recipe_sections_and_overrides(plugin, tmp_path, tiny_llama_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model:\n  path: {tiny_llama_dir}\ndecoding:\n  layer_mix: {{weight: 1.0}}\n")
    got = load_recipe(recipe).decoding.method(NAME)
    assert (got.enabled, got.weight) == (True, 1.0)
    got = load_recipe(recipe, ["decoding.layer_mix.weight=3"]).decoding.method(NAME)
    assert (got.enabled, got.weight) == (True, 3.0)
    off = load_recipe(recipe, ["decoding.layer_mix=false"]).decoding.method(NAME)
    assert not off.enabled
    with pytest.raises(ConfigError, match="weight"):
        load_recipe(recipe, ["decoding.layer_mix.weight=heavy"])
    with pytest.raises(ConfigError, match="wieght"):
        load_recipe(recipe, ["decoding.layer_mix.wieght=1"])


def test_eval_scores_the_plugin_mode(plugin, am, tmp_path):
    from toolkit.eval import EvalConfig, run_eval

    data = tmp_path / "tqa.csv"
    data.write_text("Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"
                    "A,B,Is the sky blue?,Yes,Yes; It is,No; Never,s\n")
    cfg = EvalConfig(task="truthfulqa", data_path=str(data), output_dir=str(tmp_path / "out"),
                     progress=False, modes=["greedy", NAME], template="Q: {question}\nA:")
    result = run_eval(am, cfg, with_overrides(None, layer_mix={"weight": 1.0}))
    assert result["modes"] == ["greedy", NAME]
    assert result["settings"][NAME] == {"enabled": True, "weight": 1.0, "layers": None}
    item = result["items"][0]
    assert item[NAME]["scores_true"] != item["greedy"]["scores_true"]


def test_checkpoint_round_trip_and_custom_generate_folder(plugin, am, tmp_path, tiny_llama_dir):
    ckpt = tmp_path / "ckpt"
    saved = AugmentedModel(am.base, am.graft_config, am.tokenizer,
                           decoding=with_overrides(None, layer_mix={"weight": 1.5}))
    saved.save_pretrained(ckpt)
    stored = json.loads((ckpt / "augment_config.json").read_text())["decoding"]["plugins"]
    assert stored == {NAME: {"enabled": True, "weight": 1.5, "layers": None}}
    loaded = AugmentedModel.from_pretrained(ckpt)
    assert loaded.decoding.method(NAME) == saved.decoding.method(NAME)
    ids, mask = prompt_batch(am.tokenizer)
    ours = loaded.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    folder = plain.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False,
                            custom_generate=str(ckpt), trust_remote_code=True)
    assert torch.equal(folder, ours)
    unmixed = plain.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False,
                             custom_generate=str(ckpt), trust_remote_code=True, layer_mix=False)
    assert not torch.equal(unmixed, ours)


def test_lm_eval_log_likelihoods_come_from_the_plugin(plugin, am, tmp_path):
    from toolkit.eval import harness

    ckpt = tmp_path / "ckpt"
    am.save_pretrained(ckpt)
    lm = harness.SurgeryLM(pretrained=str(ckpt), device="cpu", batch_size=64, layer_mix=True,
                           layer_mix_weight=1.0)
    assert lm.get_model_info()["surgery"]["method"] == NAME
    context = lm.tok_encode("The capital of France is")
    requests = [(("ctx", f"t{i}"), context, [i]) for i in range(am.base.config.vocab_size)]
    logliks = [ll for ll, _ in lm._loglikelihood_tokens(requests, disable_tqdm=True)]
    assert math.fsum(math.exp(v) for v in logliks) == pytest.approx(1.0, abs=1e-5)
    ids = torch.tensor([context])
    with torch.no_grad(), am.tap.capture(last_only=True):
        final = am.base(ids).logits[:, -1].float()
        early = am.tap.early_logits().float()
    want = torch.log_softmax(_mixed(final, early, 1.0), dim=-1)[0]
    assert torch.allclose(torch.tensor(logliks), want, atol=1e-4)


def _cli(*args, path: Path | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(p) for p in (ROOT, path) if p is not None)}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_cli_help_generate_and_a_checkpoint_without_the_plugin(package, am, tmp_path,
                                                               tiny_llama_dir):
    """The installed plugin shows in --help and drives `generate`; a checkpoint that needs it,
    loaded where it is not installed, is one line and exit 2."""
    listed = _cli("--help", path=package, cwd=tmp_path)
    assert listed.returncode == 0 and NAME in listed.stdout.split("decoding methods")[1]
    assert NAME in _cli("eval", "--help", path=package, cwd=tmp_path).stdout
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path}/ckpt\nwork_dir: {tmp_path}/work\nmodel:\n  path: "
                      f"{tiny_llama_dir}\ngraft:\n  head: {{hidden_size: 16}}\ndecoding:\n"
                      "  layer_mix: {weight: 1.5}\n  max_new_tokens: 4\n"
                      "generate:\n  prompts: ['The quick brown fox']\n")
    made = _cli("graft", recipe, path=package, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    ran = _cli("generate", recipe, f"model.path={tmp_path}/ckpt", path=package, cwd=tmp_path)
    assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"work_dir: {tmp_path}/work\nmodel:\n  path: {tmp_path}/ckpt\n"
                     "generate:\n  prompts: ['The quick brown fox']\n")
    refused = _cli("generate", plain, path=None, cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "'layer_mix'" in lines[0] and "not registered" in lines[0]


def test_a_recipe_imports_a_module_that_registers(tmp_path, tiny_llama_dir):
    module = tmp_path / "mods" / "my_methods.py"
    module.parent.mkdir()
    module.write_text(_example() + "\nfrom toolkit.methods import register\n\nregister(METHOD)\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"imports: [my_methods]\nwork_dir: {tmp_path}/work\nmodel:\n  path: "
                      f"{tiny_llama_dir}\ndecoding:\n  layer_mix: {{weight: 1.5}}\n"
                      "  max_new_tokens: 4\ngenerate:\n  prompts: ['The quick brown fox']\n")
    printed = _cli("generate", recipe, "--print-config", path=module.parent, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert "layer_mix:" in printed.stdout and "weight: 1.5" in printed.stdout
    ran = _cli("generate", recipe, path=module.parent, cwd=tmp_path)
    assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr
    missing = _cli("generate", recipe, "imports=[no_such_module]", path=module.parent,
                   cwd=tmp_path)
    assert missing.returncode == 2 and "cannot import 'no_such_module'" in missing.stderr
    unregistered = _cli("generate", recipe, "imports=[]", path=module.parent, cwd=tmp_path)
    assert unregistered.returncode == 2
    assert "unknown key 'decoding.layer_mix'" in unregistered.stderr
    assert "a method from another package" in unregistered.stderr
