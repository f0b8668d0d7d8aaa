"""The command line: help, --print-config, one-line errors before any model loads, and the
subcommands on the tiny model (graft, generate, eval, bench; the quickstart `run` is slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _generation import greedy_texts

from toolkit.cli.main import COMMANDS, main
from toolkit.graft.augmented import AugmentedModel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def recipe(tmp_path, tiny_llama_dir) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(
        f"run_name: t\noutput_dir: {tmp_path}/out\nwork_dir: {tmp_path}/work\n"
        f"model:\n  path: {tiny_llama_dir}\ngraft:\n  head:\n    hidden_size: 16\n"
        "decoding:\n  max_new_tokens: 6\n"
    )
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    """Any attempt to load weights fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("toolkit.recipes.models._load_local", refuse)
    monkeypatch.setattr("toolkit.recipes.models._random_model", refuse)


def run_main(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_of_every_subcommand(capsys, name):
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert COMMANDS[name].summary in out and "--print-config" in out and "key=value" in out


def test_the_command_table_imports_no_torch_until_a_command_runs():
    """`COMMANDS` holds the functions themselves; their modules import torch, transformers and
    Lightning only when a command runs, so `--help` and a recipe error stay quick."""
    code = ("import sys; from toolkit.cli.main import COMMANDS; "
            "print(sorted(m for m in ('torch', 'transformers', 'lightning') if m in sys.modules), "
            "[f'{c.run.__module__}.{c.run.__name__}' for c in COMMANDS.values()])")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout == (
        "[] ['toolkit.cli.commands.cmd_graft', 'toolkit.cli.lpo.cmd_collect', "
        "'toolkit.cli.lpo.cmd_train', 'toolkit.cli.commands.cmd_generate', "
        "'toolkit.cli.commands.cmd_eval', 'toolkit.cli.commands.cmd_bench', "
        "'toolkit.cli.lpo.cmd_run', 'toolkit.cli.serve.cmd_serve']\n")


def test_print_config_resolves_and_loads_nothing(capsys, recipe, no_model_load, tmp_path):
    code, out, err = run_main(
        capsys, "graft", recipe, "run_name=x", "output_dir=o/${run_name}", "--print-config"
    )
    assert (code, err) == (0, "")
    assert "output_dir: o/x\n" in out and "evolution_scale: 10" in out and "${" not in out


def refused_dir(tmp_path: Path) -> Path:
    """A model folder of a type the toolkit refuses before loading (families.REFUSED)."""
    path = tmp_path / "refused"
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "deepseek_v4"}')
    return path


ERRORS = {
    "unknown key": (
        ["decoding.sled.evolution_sacle=5"],
        "did you mean 'decoding.sled.evolution_scale'",
    ),
    "wrong type": (["decoding.max_new_tokens=lots"], "wrong type for decoding.max_new_tokens"),
    "out of range": (["decoding.top_p=1.5"], "top_p=1.5 is out of range"),
    "missing model dir": (
        ["model.path=/no/such/model"],
        "model.path='/no/such/model' does not exist",
    ),
    "no config.json": (["model.path={tmp}"], "has no config.json"),
    "unsupported architecture": (["model.path={refused}"],
                                 "model_type 'deepseek_v4' is not supported: its decoder layers"),
    "random shape outside bench": (
        ["model.path=null", "model.random_shape=tiny"],
        "for bench only",
    ),
    "no prompts": ([], "no prompts"),
    "missing input file": (["generate.input={tmp}/none.jsonl"], "generate.input="),
    "parallel without output": (
        ["generate.prompts=[a]", "trainer.devices=2"],
        "set generate.output",
    ),
    "parallel with spawn": (
        [
            "generate.prompts=[a]",
            "generate.output=o.jsonl",
            "trainer.devices=2",
            "trainer.strategy=ddp_spawn",
        ],
        "not 'ddp_spawn'",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line_exit_2_before_loading(capsys, recipe, tmp_path, no_model_load, case):
    overrides, expected = ERRORS[case]
    subs = {"tmp": tmp_path, "refused": refused_dir(tmp_path) if "refused" in str(overrides) else ""}
    code, out, err = run_main(capsys, "generate", recipe, *[o.format(**subs) for o in overrides])
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err
    assert not (tmp_path / "out").exists()


def test_missing_recipe_and_missing_pairs(capsys, recipe, tmp_path, no_model_load):
    code, _, err = run_main(capsys, "graft", tmp_path / "nope.yaml")
    assert code == 2 and "recipe file not found" in err and err.count("\n") == 1
    code, _, err = run_main(capsys, "train", recipe)
    assert code == 2 and "data.pairs=" in err and "run `collect` first" in err


def test_subprocess_error_and_console_script(recipe):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    bad = subprocess.run(
        [sys.executable, "cli.py", "graft", str(recipe), "graft.layer=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert (
        bad.stderr
        == "error: unknown key 'graft.layer' in override 'graft.layer=all'; did you mean 'graft.layers'?\n"
    )
    ok = subprocess.run(["surgery", "run", "--help"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and COMMANDS["run"].summary in ok.stdout


def test_graft_then_generate_from_the_checkpoint(capsys, recipe, tmp_path):
    code, out, _ = run_main(capsys, "graft", recipe)
    ckpt = tmp_path / "out"
    assert code == 0 and str(ckpt) in out
    assert {"augment_config.json", "head.safetensors"} <= {p.name for p in ckpt.iterdir()}
    saved = json.loads((ckpt / "augment_config.json").read_text())
    assert saved["decoding"]["max_new_tokens"] == 6 and saved["graft"]["head"]["hidden_size"] == 16
    prompts = ["Hello there", "The cat sat on", "1 2 3"]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"id": i, "text": p}) + "\n" for i, p in enumerate(prompts))
    )
    target = tmp_path / "gen.jsonl"
    code, out, _ = run_main(
        capsys,
        "generate",
        recipe,
        f"model.path={ckpt}",
        f"generate.input={source}",
        "generate.prompt_field=text",
        f"generate.output={target}",
        "generate.batch_size=2",
    )
    assert code == 0 and f"wrote 3 completions to {target}" in out
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["id"], r["text"]) for r in rows] == list(enumerate(prompts))
    expected = greedy_texts(AugmentedModel.from_pretrained(ckpt), prompts, 6)
    assert [r["completion"] for r in rows] == expected
    assert all(r["completion"] for r in rows)


def test_single_prompt_streams_to_the_terminal(capsys, recipe, tiny_llama_dir):
    code, out, _ = run_main(
        capsys,
        "generate",
        recipe,
        "generate.prompts=[Once upon a time]",
        "decoding.sled.enabled=true",
        "decoding.sled.evolution_scale=5",
    )
    assert code == 0
    model = AugmentedModel.graft(tiny_llama_dir)
    ids = model.tokenizer("Once upon a time", return_tensors="pt")["input_ids"]
    sled = model.generate(ids, max_new_tokens=6, sled={"enabled": True, "evolution_scale": 5})
    expected = model.tokenizer.decode(sled[0, ids.shape[1] :], skip_special_tokens=True)
    assert out == f"Once upon a time{expected}\n"


def test_bench_on_a_random_shape(capsys, recipe, tmp_path):
    code, out, _ = run_main(
        capsys,
        "bench",
        recipe,
        "model.path=null",
        "model.random_shape=tiny",
        "bench.batch_sizes=[1]",
        "bench.prompt_len=4",
        "bench.new_tokens=2",
        "bench.repeats=1",
        "bench.warmup=0",
        "bench.modes=[greedy]",
        "bench.plot=false",
        "bench.progress=false",
    )
    assert code == 0
    result = json.loads((tmp_path / "work" / "bench" / "bench.json").read_text())
    assert result
    assert "greedy" in out


def test_eval_on_a_gsm8k_file(capsys, recipe, tmp_path):
    data = tmp_path / "gsm8k.jsonl"
    rows = [{"question": "1+1?", "answer": "so #### 2"}, {"question": "2+2?", "answer": "#### 4"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = run_main(
        capsys,
        "eval",
        recipe,
        "eval.task=gsm8k",
        f"eval.data_path={data}",
        "eval.modes=[greedy]",
        "eval.progress=false",
    )
    assert code == 0 and "wrote 2 scored items" in out
    result = json.loads((tmp_path / "work" / "eval" / "results.json").read_text())
    assert result["num_items"] == 2 and list(result["totals"]) == ["greedy"]


@pytest.mark.slow
def test_tiny_run_end_to_end(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SURGERY_CACHE", str(tmp_path / "cache"))
    code, out, _ = run_main(
        capsys,
        "run",
        ROOT / "recipes" / "tiny.yaml",
        f"output_dir={tmp_path}/ckpt",
        f"work_dir={tmp_path}/work",
        "data.synthetic.train_prompts=48",
        "data.synthetic.eval_prompts=8",
        "collect.num_replies=4",
        "trainer.max_epochs=3",
    )
    assert code == 0
    for step in (
        "[1/5] grafted llama",
        "collected",
        "trained the head",
        "[4/5] reloaded",
        "learned temperature per prompt kind",
        "[exact]",
        "[diverse]",
    ):
        assert step in out
    assert f"checkpoint: {tmp_path}/ckpt" in out
    reloaded = AugmentedModel.from_pretrained(tmp_path / "ckpt")
    last = list(reloaded.head.parameters())[-1]
    assert last.abs().sum() > 0, "the zero-initialised last layer was trained"
    assert (tmp_path / "work" / "pairs.jsonl").stat().st_size > 0


def test_bad_prompt_file_and_reward_model_dir(capsys, recipe, tmp_path, no_model_load):
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "ok"}\n{"prompt": \n')
    code, _, err = run_main(capsys, "generate", recipe, f"generate.input={source}")
    assert code == 2 and f"{source}:2: invalid JSON" in err and err.count("\n") == 1
    code, _, err = run_main(
        capsys,
        "collect",
        recipe,
        "collect.reward.kind=reward_model",
        f"collect.reward.model_path={tmp_path}/rm",
    )
    assert code == 2 and "collect.reward.model_path" in err


def test_prompt_file_with_template(recipe, tmp_path):
    from toolkit.core.errors import DataError
    from toolkit.lpo.pipeline import task_prompts
    from toolkit.recipes import load_recipe

    data = tmp_path / "gsm.jsonl"
    data.write_text(
        '{"question": "1+1?", "answer": "#### 2"}\n{"question": "2+3?", "answer": "5"}\n'
    )
    overrides = [
        f"data.prompts={data}",
        "data.prompt_field=question",
        "data.template='Q: {question} A:'",
    ]
    loaded = load_recipe(recipe, overrides)
    records, reward = task_prompts(None, loaded.data, loaded.collect.max_new_tokens)
    assert reward is None
    assert [(r["prompt"], r["answer"]) for r in records] == [
        ("Q: 1+1? A:", "#### 2"),
        ("Q: 2+3? A:", "5"),
    ]
    broken = load_recipe(recipe, [*overrides[:2], "data.template='{missing}'"])
    with pytest.raises(DataError, match="prompt 1 has no field 'missing'"):
        task_prompts(None, broken.data, broken.collect.max_new_tokens)


@pytest.mark.slow
def test_arith_writing_run_on_the_tiny_model(capsys, tmp_path, monkeypatch):
    """The quickstart's task and report, end to end, on the tiny model (the real model's run
    is the quickstart itself)."""
    monkeypatch.setenv("SURGERY_CACHE", str(tmp_path / "cache"))
    code, out, _ = run_main(
        capsys, "run", ROOT / "recipes" / "quickstart.yaml",
        "model.preset=null", "model.tiny=llama", "graft.head.hidden_size=16",
        f"output_dir={tmp_path}/ckpt", f"work_dir={tmp_path}/work",
        "data.arith_writing.train_per_kind=3", "data.arith_writing.eval_per_kind=2",
        "data.arith_writing.eval_samples=2", "collect.num_replies=3", "collect.max_new_tokens=4",
        "decoding.max_new_tokens=4", "trainer.max_epochs=1",
    )
    assert code == 0
    for step in ("sequence-level head (held-out: 4 prompts x 2 samples)", "arithmetic picks",
                 "writing    picks", "token-level head", "mean temperature of reply tokens",
                 "[arithmetic] What is", "    SLED: ", "fixed temperature (best fixed: tau=",
                 "  EDT    ", "tuned on 6 training prompts x 2 samples), "):
        assert step in out
    # the evaluation says what it does, then one line per setting as it finishes
    assert ("evaluating on 4 held-out prompts x 2 samples: 7 settings, after tuning EDT's t0 "
            "and theta on the training prompts (6 settings)") in out
    assert ("evaluating on 4 held-out prompts x 2 samples: the head (the other rows are "
            "reused)") in out
    lines = [line for line in out.splitlines() if " replies in " in line]
    labels = [line.split(":")[0].strip() for line in lines]
    assert labels[:6] == [f"EDT t0={t0} theta={theta} (tuning, training prompts)"
                          for t0 in ("0.5", "1") for theta in ("0.5", "2", "8")]
    assert labels[6:14] == ["the head", "tau=0 (greedy)", "tau=0.25", "tau=0.5", "tau=0.75",
                            "tau=1", "EDT (tuned)", "the head"]  # then the token-level head
    assert lines[7].split(": ")[1].startswith("4 replies in ")  # greedy: drawn once
    report = json.loads((tmp_path / "work" / "report.json").read_text())
    assert set(report["sequence"]["rewards"]) == {"head", "0", "0.25", "0.5", "0.75", "1", "edt"}
    edt = report["sequence"]["edt"]
    assert len(edt["grid"]) == 6 and edt["grid"][f"t0={edt['t0']:g} theta={edt['theta']:g}"] == \
        max(edt["grid"].values())
    for row in ("0.5", "edt"):
        assert report["token"]["rewards"][row] == report["sequence"]["rewards"][row]
    assert len(report["side_by_side"]) == 3
    assert (tmp_path / "ckpt-token" / "head.safetensors").is_file()
