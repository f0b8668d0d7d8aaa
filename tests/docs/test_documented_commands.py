"""Every `cli.py` command quoted in a recipe's header, the README or a docs page (docs/*.md)
parses and validates as written (the shell's quoting applied by bash itself), and runs: each one
is executed in a scratch folder by `test_documented_command_runs`, and its output is checked for
what the command claims (a reply has text, a score lies in its range, a checkpoint is written).
A command quoted in several places runs once.

Runs are kept short with overrides appended after the documented ones (fewer prompts, tokens,
epochs; the quickstart pipeline at a fraction of its size). Placeholders become small files of
the same format: /path/to/TruthfulQA.csv a two-question CSV, in.jsonl two prompts, and so on.
Recipes for models that cannot run here (7B-8B, Mixtral) run on the tiny Llama instead
(`model.path=` appended): those runs check the command's pipeline, not that model. SmolLM2
commands run the real model (`real` marker); multi-GPU training needs CUDA (skipped without)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from _datasets import truthfulqa_csv

from toolkit.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]
COMMAND = re.compile(rf"python3? cli\.py ((?:{'|'.join(COMMANDS)}) [^`\n]*)")
PLACEHOLDER_RECIPE = "recipes/tiny.yaml"  # the generic `RECIPE` of docs/recipes.md
EMPTY_NOTE = "(empty reply: the end token came first)"


def documented() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                found += [(path.name, m.group(1).strip()) for m in COMMAND.finditer(line)]
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        name = path.relative_to(ROOT).as_posix()
        found += [(name, m.group(1).strip()) for m in COMMAND.finditer(path.read_text())]
    return found


def shell_words(text: str) -> list[str]:
    """The argv bash would pass for `text` (quotes removed, $(...) expanded)."""
    done = subprocess.run(["bash", "-c", f"printf '%s\\0' {text}"], capture_output=True,
                          text=True, check=True)
    return done.stdout.split("\0")[:-1]


def test_the_docs_quote_commands():
    sources = {source for source, _ in documented()}
    assert {"README.md", "docs/recipes.md", "docs/figures.md", "docs/real-models.md",
            "quickstart.yaml", "sled_llama2_7b.yaml", "sled_smollm2.yaml"} <= sources


@pytest.mark.parametrize("source, command", documented(), ids=lambda v: str(v)[:70])
def test_documented_command_validates(source, command, capsys):
    argv = shell_words(command.replace(" RECIPE ", f" {PLACEHOLDER_RECIPE} "))
    argv[1] = str(ROOT / argv[1])  # the recipe, written relative to the checkout
    assert main([*argv, "--print-config"]) == 0, capsys.readouterr().err


# ---- running them --------------------------------------------------------------------------

QUESTIONS = [("What is 2 + 3?", "5"), ("What is 4 + 4?", "8")]
TINY = "model.path={tiny}"  # the tiny Llama in place of a model that cannot run here
# The tiny model's replies are noise, so every reply would score 0 on exact match: on it the
# LPO recipes are rewarded for unrepeated tokens, which separates its replies.
SMALL_LPO = ["collect.num_replies=6", "collect.max_new_tokens=10", "collect.reward.kind=repetition",
             "collect.reward.ngram=1", "decoding.max_new_tokens=4", "trainer.max_epochs=1",
             "trainer.accelerator=cpu"]
SMALL_BENCH = ["bench.batch_sizes=[1]", "bench.prompt_len=8", "bench.new_tokens=3",
               "bench.repeats=1", "bench.warmup=0", "bench.sled_ks=[4]", "bench.plot=false",
               "bench.progress=false"]
SMALL_QUICKSTART = ["data.arith_writing.train_per_kind=3", "data.arith_writing.eval_per_kind=2",
                    "data.arith_writing.eval_samples=2", "data.arith_writing.token_head=false",
                    "collect.num_replies=3", "collect.max_new_tokens=6", "trainer.max_epochs=2",
                    "decoding.max_new_tokens=8"]


def check_reply(out: str, ctx: Workspace) -> None:
    """One prompt streamed: the prompt, then a reply with words (never blank)."""
    assert out.startswith(ctx.prompt), out
    reply = out[len(ctx.prompt):]
    assert reply.strip() and EMPTY_NOTE not in reply, out
    if ctx.real:
        assert len(reply.split()) >= 2, out


def check_canberra(out: str, ctx: Workspace) -> None:
    check_reply(out, ctx)
    assert "Canberra" in out, out


def check_paris(out: str, ctx: Workspace) -> None:
    check_reply(out, ctx)
    assert "Paris" in out, out


def check_scores(out: str, ctx: Workspace) -> None:
    """`eval`: every mode's MC1/MC2/MC3 (or accuracy) lies in [0, 1]."""
    scores = [float(v) for v in re.findall(r"(?:MC\d|accuracy) (-?[\d.]+)", out)]
    assert scores and all(0.0 <= s <= 1.0 for s in scores), out


def check_sweep(out: str, ctx: Workspace) -> None:
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    cells = [float(c) for row in rows[1:] for c in row.strip("|").split("|")[1:]]
    assert len(rows) == 7 and cells and all(0.0 <= c <= 1.0 for c in cells), out


def check_bench(out: str, ctx: Workspace) -> None:
    folder = Path(re.search(r"wrote the benchmark table, JSON and plot to (\S+)", out).group(1))
    rows = json.loads((ctx.cwd / folder / "bench.json").read_text())["rows"]
    assert rows and all(r["decode_ms_per_token"] > 0 and r["tokens_per_s"] > 0 for r in rows)


def check_allocators(out: str, ctx: Workspace) -> None:
    check_bench(out, ctx)
    folder = Path(re.search(r"wrote the benchmark table, JSON and plot to (\S+)", out).group(1))
    rows = json.loads((ctx.cwd / folder / "bench.json").read_text())["rows"]
    assert [r["allocator"] for r in rows if r["mode"] == "greedy"] == ["reuse", "system"]


def check_scoring_bench(out: str, ctx: Workspace) -> None:
    check_bench(out, ctx)
    folder = Path(re.search(r"wrote the benchmark table, JSON and plot to (\S+)", out).group(1))
    rows = json.loads((ctx.cwd / folder / "bench.json").read_text())["eval_rows"]
    assert {(r["mode"], r["shared_prefix"]) for r in rows} == {
        (m, s) for m in ("greedy", "sled", "dola", "contrastive") for s in (False, True)}
    assert all(r["questions_per_s"] > 0 for r in rows)


def check_graft(out: str, ctx: Workspace) -> None:
    saved = Path(re.search(r"saved augmented checkpoint to (\S+)", out).group(1))
    assert (ctx.cwd / saved / "augment_config.json").is_file(), out


def check_collect(out: str, ctx: Workspace) -> None:
    prompts = int(re.search(r"collected \d+ pairs from (\d+) prompts", out).group(1))
    assert prompts > 0, out


def check_train(out: str, ctx: Workspace) -> None:
    assert re.search(r"trained the head .*loss [\d.]+ -> [\d.]+ in \d+ steps", out), out
    saved = Path(re.search(r"checkpoint: (\S+)", out).group(1))
    assert (ctx.cwd / saved / "augment_config.json").is_file(), out


def check_text_run(out: str, ctx: Workspace) -> None:
    """`run` on a prompt file: collected, trained, and sample replies shown."""
    check_collect(out, ctx)
    check_train(out, ctx)
    assert re.search(r"^  (['\"]).*\1 -> (['\"]).+\2$", out, re.M), out


def check_tiny_run(out: str, ctx: Workspace) -> None:
    assert "[5/5] learned temperature per prompt kind" in out, out
    reward = re.search(r"mean reward: head (-?[\d.]+)", out)
    assert reward and 0.0 <= float(reward.group(1)) <= 1.0, out


def check_quickstart_run(out: str, ctx: Workspace) -> None:
    table = re.findall(r"^  (?:head|tau=[\d.]+) +(-?[\d.]+) +(-?[\d.]+) +(-?[\d.]+)$", out, re.M)
    assert table and all(-1.0 <= float(v) <= 1.0 for row in table for v in row), out
    replies = re.findall(r"^    [^:]+: (['\"])(.*)\1$", out, re.M)
    assert len(replies) == 9 and all(r.strip() for _, r in replies), out
    assert (ctx.cwd / "checkpoints" / "quickstart" / "augment_config.json").is_file()


def check_served(out: str, ctx: Workspace) -> None:
    """`serve`: the server answered a chat request with the checkpoint's decoding."""
    answer = json.loads(out)
    assert answer["choices"][0]["message"]["content"].strip(), out


def check_jsonl(out: str, ctx: Workspace) -> None:
    rows = [json.loads(line) for line in (ctx.cwd / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["finish_reason"] in ("stop", "length") for r in rows)
    assert all(r["completion"].strip() or r["empty"] for r in rows)


@dataclass
class Run:
    """How a documented command runs here: overrides appended, the check of its output, the
    command whose output it needs first, and whether it needs a real model (the preset it
    uses), CUDA, or its own processes (DDP)."""

    check: Callable[[str, Workspace], None]
    extra: list[str] = field(default_factory=list)
    needs: str | None = None
    real: bool = False
    preset: str = "smollm2-135m-instruct"
    gpu: bool = False
    subprocess: bool = False
    server: bool = False


GEMMA3 = "gemma3-270m"
QS_GENERATE = ("generate recipes/quickstart.yaml model.preset=null model.path=checkpoints/"
               "quickstart generate.prompts='[\"{}\"]'")
RUNS: dict[str, Run] = {
    "run recipes/quickstart.yaml": Run(check_quickstart_run, SMALL_QUICKSTART, real=True),
    QS_GENERATE.format("Write a haiku about the sea."): Run(
        check_reply, needs="run recipes/quickstart.yaml", real=True),
    QS_GENERATE.format("What is 12 + 7? Answer with the number only."): Run(
        check_reply, needs="run recipes/quickstart.yaml", real=True),
    "serve recipes/serve_smollm2.yaml": Run(
        check_served, needs="run recipes/quickstart.yaml", real=True, server=True),
    "run recipes/tiny.yaml": Run(check_tiny_run, [
        "data.synthetic.train_prompts=32", "data.synthetic.eval_prompts=8",
        "trainer.max_epochs=2"]),
    "generate recipes/tiny.yaml model.tiny=null model.path=checkpoints/tiny": Run(
        check_reply, needs="run recipes/tiny.yaml"),
    "generate RECIPE generate.input=in.jsonl generate.output=out.jsonl": Run(check_jsonl),
    "eval RECIPE eval.task=truthfulqa eval.data_path=TruthfulQA.csv": Run(
        check_scores, ["eval.modes=[greedy,sled]"]),
    "graft recipes/sled_llama3_8b.yaml model.path=/models/llama-3-8b": Run(check_graft),
    "collect recipes/lpo_gsm8k.yaml": Run(check_collect, [TINY, *SMALL_LPO]),
    "train recipes/lpo_gsm8k.yaml trainer.devices=2 trainer.strategy=ddp": Run(
        check_train, [TINY, *SMALL_LPO, "train.val_fraction=0.0"],
        needs="collect recipes/lpo_gsm8k.yaml", subprocess=True),
    "run recipes/lpo_gsm8k.yaml": Run(check_text_run, [TINY, *SMALL_LPO]),
    "run recipes/lpo_token_repetition.yaml": Run(check_text_run, [TINY, *SMALL_LPO]),
    "collect recipes/train_ddp.yaml": Run(check_collect, [TINY, *SMALL_LPO]),
    "train recipes/train_ddp.yaml": Run(check_train, [TINY, "trainer.max_epochs=1"],
                                        needs="collect recipes/train_ddp.yaml", gpu=True),
    "collect recipes/train_fsdp.yaml": Run(check_collect, [TINY, *SMALL_LPO]),
    "train recipes/train_fsdp.yaml": Run(check_train, [TINY, "trainer.max_epochs=1"],
                                         needs="collect recipes/train_fsdp.yaml", gpu=True),
    "generate recipes/sled_llama2_7b.yaml generate.prompts='[\"Q: Why is the sky blue?\\nA:\"]'":
        Run(check_reply, [TINY, "decoding.max_new_tokens=6"]),
    "eval recipes/sled_llama2_7b.yaml eval.data_path=/path/to/TruthfulQA.csv": Run(
        check_scores, [TINY]),
    "generate recipes/sled_smollm2.yaml decoding.sled.enabled=false": Run(
        check_canberra, ["decoding.max_new_tokens=10"], real=True),
    "generate recipes/sled_smollm2.yaml": Run(
        check_canberra, ["decoding.max_new_tokens=10"], real=True),
    "eval recipes/sled_smollm2.yaml eval.data_path=/path/to/TruthfulQA.csv": Run(
        check_scores, real=True),
    "eval recipes/sled_smollm2.yaml eval.data_path=/path/to/TruthfulQA.csv "
    "graft.layers=\"[$(seq -s, 0 29)]\"": Run(check_scores, ["eval.modes=[sled]"], real=True),
    "generate recipes/sled_smollm2.yaml model.preset=gemma3-270m": Run(
        check_reply, ["decoding.max_new_tokens=6"], real=True, preset=GEMMA3),
    "generate recipes/sled_gemma3.yaml decoding.sled.enabled=false": Run(
        check_paris, ["decoding.max_new_tokens=4"], real=True, preset=GEMMA3),
    "generate recipes/sled_gemma3.yaml": Run(
        check_paris, ["decoding.max_new_tokens=4"], real=True, preset=GEMMA3),
    "eval recipes/sled_gemma3.yaml eval.data_path=/path/to/TruthfulQA.csv": Run(
        check_scores, ["eval.limit=1"], real=True, preset=GEMMA3),
    "bench recipes/bench_gemma3.yaml": Run(check_bench, [
        *SMALL_BENCH, "bench.modes=[greedy,sled]", "bench.eval_questions=0"],
        real=True, preset=GEMMA3),
    "eval recipes/sweep_gemma3_arithmetic.yaml": Run(check_sweep, [
        "eval.limit=2", "eval.temperatures=[1.0]", "eval.sweep_samples=1",
        "decoding.max_new_tokens=4"], real=True, preset=GEMMA3),
    "eval recipes/sweep_smollm2_arithmetic.yaml": Run(check_sweep, [
        "eval.limit=2", "eval.temperatures=[1.0]", "eval.sweep_samples=1",
        "decoding.max_new_tokens=6"], real=True),
    "eval recipes/sweep_smollm2_arithmetic.yaml eval.task=gsm8k "
    "eval.data_path=/path/to/gsm8k_test.jsonl": Run(check_sweep, [
        "eval.temperatures=[1.0]", "eval.sweep_samples=1", "decoding.max_new_tokens=6"],
        real=True),
    "bench recipes/bench_smollm2.yaml 'bench.modes=[greedy,floor,sled,dola]' bench.repeats=3 "
    "bench.eval_questions=0 'bench.allocators=[reuse,system]'": Run(
        check_allocators, [*SMALL_BENCH, "bench.modes=[greedy]"], real=True),
    "bench recipes/bench_llama_d512.yaml": Run(check_bench, SMALL_BENCH),
    "bench recipes/bench_llama_d512.yaml graft.head.level=token": Run(check_bench, SMALL_BENCH),
    "bench recipes/bench_llama_d512.yaml 'bench.modes=[greedy,floor,sled,dola,composed]' "
    "'bench.sled_ks=[50]'": Run(check_bench, SMALL_BENCH),
    "bench recipes/bench_llama_d512.yaml 'bench.modes=[greedy,sled,dola,contrastive]' "
    "'bench.batch_sizes=[1]' bench.new_tokens=2 bench.repeats=3 'bench.sled_ks=[10]' "
    "bench.eval_questions=2": Run(check_scoring_bench, [
        *SMALL_BENCH, "bench.eval_questions=1", "bench.eval_prompt_len=6", "bench.eval_answers=2",
        "bench.eval_answer_len=2"]),
    "bench recipes/bench_smollm2.yaml": Run(check_bench, [*SMALL_BENCH, "bench.eval_questions=1"],
                                            real=True),
    "bench recipes/bench_smollm2.yaml graft.head.level=token": Run(
        check_bench, [*SMALL_BENCH, "bench.modes=[greedy,floor,adaptive]"], real=True),
}


def test_every_documented_command_has_a_run():
    missing = sorted({c for _, c in documented()} - set(RUNS))
    assert not missing, f"add these documented commands to RUNS: {missing}"


class Workspace:
    """The scratch folders the commands run in (one per command and the commands that need
    it, as their working directory), holding the small files that stand for the documented
    placeholders; commands run at most once."""

    def __init__(self, root: Path, tiny: Path):
        self.root, self.tiny, self.real, self.prompt = root, tiny, False, ""
        self.cwd = root
        self.done: dict[str, str] = {}

    def enter(self, command: str) -> Path:
        """The folder of `command`'s chain (made with its placeholder files), now `cwd`."""
        while RUNS[command].needs:
            command = RUNS[command].needs
        self.cwd = self.root / re.sub(r"[^a-z0-9]+", "-", command.lower())[:60]
        if not self.cwd.exists():
            self.cwd.mkdir()
            self._placeholders(self.cwd)
        return self.cwd

    @staticmethod
    def _placeholders(cwd: Path) -> None:
        rows = [{"question": q, "answer": f"{q} #### {a}"} for q, a in QUESTIONS]
        (cwd / "data").mkdir()
        for name in ("data/gsm8k_train.jsonl", "gsm8k_test.jsonl", "prompts.jsonl"):
            (cwd / name).write_text("".join(json.dumps({**r, "prompt": r["question"]}) + "\n"
                                            for r in rows))
        (cwd / "in.jsonl").write_text('{"prompt": "Once upon a time"}\n{"prompt": "The cat"}\n')
        truthfulqa_csv(cwd / "TruthfulQA.csv")

    def argv(self, command: str, run: Run) -> list[str]:
        words = shell_words(command.replace(" RECIPE ", f" {PLACEHOLDER_RECIPE} "))
        words[1] = str(ROOT / words[1])
        paths = {"/path/to/TruthfulQA.csv": self.cwd / "TruthfulQA.csv",
                 "/path/to/gsm8k_test.jsonl": self.cwd / "gsm8k_test.jsonl",
                 "/models/llama-3-8b": self.tiny}
        for placeholder, path in paths.items():
            words = [w.replace(placeholder, str(path)) for w in words]
        extra = [e.format(tiny=self.tiny) for e in run.extra]
        if TINY in run.extra and "data.prompts" in (ROOT / words[1]).read_text():
            extra.append(f"data.prompts={self.cwd / 'prompts.jsonl'}")
        return [*words, *extra, "runtime.threads=1"]

    def run(self, command: str, capsys) -> str:
        if command in self.done:
            return self.done[command]
        spec = RUNS[command]
        if spec.needs:
            self.run(spec.needs, capsys)
        argv = self.argv(command, spec)
        if argv[0] == "generate":
            self.prompt = _first_prompt(argv)
        if spec.server:
            out = _served(argv, self.cwd)
        elif spec.subprocess:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "MASTER_PORT": str(_free_port())}
            done = subprocess.run([sys.executable, str(ROOT / "cli.py"), *argv], cwd=self.cwd,
                                  env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-2000:]
            out = done.stdout
        else:
            code = main(argv)
            out, err = capsys.readouterr()
            assert code == 0, err[-2000:]
        self.done[command] = out
        return out


def _served(argv: list[str], cwd: Path) -> str:
    """Start `cli.py serve` (the documented command) on a free port, ask it one chat question,
    stop it; the answer as JSON."""
    pytest.importorskip("vllm", reason="serving needs vLLM: python3 -m toolkit.serving.install")
    from toolkit.serving.server import post, started

    port = _free_port()
    command = [sys.executable, str(ROOT / "cli.py"), *argv, f"serve.port={port}"]
    with started(command, f"http://127.0.0.1:{port}", log=cwd / "serve.log", cwd=cwd,
                 env={"PYTHONPATH": str(ROOT)}) as url:
        status, answer = post(url, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "Write a haiku about the sea."}],
            "max_tokens": 16})
    assert status == 200, answer
    return json.dumps(answer)


def _first_prompt(argv: list[str]) -> str:
    from toolkit.recipes.load import merged_config, to_recipe

    return (to_recipe(merged_config(argv[1], argv[2:])).generate.prompts or [""])[0]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_llama_dir) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("documented"), tiny_llama_dir)


def _marks(command: str) -> list:
    run = RUNS.get(command)
    if run is None:
        return []
    marks = [pytest.mark.slow]
    if run.real:
        marks.append(pytest.mark.real)
    if run.gpu:
        need, found = _cuda_devices(command), torch.cuda.device_count()
        marks += [pytest.mark.gpu, pytest.mark.skipif(
            found < need, reason=f"needs {need} CUDA device(s), found {found}")]
    return marks


def _cuda_devices(command: str) -> int:
    """The CUDA devices a documented command asks for: its recipe's `trainer.devices` when a
    number (a DDP/FSDP recipe asks for 4 or 8), else 1."""
    from omegaconf import OmegaConf

    recipe = next(w for w in command.split() if w.endswith(".yaml"))
    devices = OmegaConf.load(ROOT / recipe).get("trainer", {}).get("devices", 1)
    return devices if isinstance(devices, int) else 1


@pytest.mark.parametrize("command", [pytest.param(c, marks=_marks(c)) for c in
                                     dict.fromkeys(c for _, c in documented())],
                         ids=lambda v: str(v)[:70])
def test_documented_command_runs(command, workspace, capsys, monkeypatch, request):
    if command not in RUNS:
        pytest.fail(f"no run for {command!r}: add it to RUNS")
    if RUNS[command].real or (RUNS[command].needs and RUNS[RUNS[command].needs].real):
        # skips with one line when the preset cannot be had
        request.getfixturevalue("real_preset_dir")(RUNS[command].preset)
        workspace.real = True
    else:
        workspace.real = False
    monkeypatch.chdir(workspace.enter(command))
    out = workspace.run(command, capsys)
    RUNS[command].check(out, workspace)
