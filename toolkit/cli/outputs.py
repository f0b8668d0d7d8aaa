"""Every path a command writes, checked and locked before any model loads.

`check` refuses, with one line each: an output that is an input (the same file by path or
inode, or inside an input folder: the recipe, model.path, generate.input, data.prompts, ...); a
non-empty JSONL output this toolkit did not write; a report it did not write; a folder or file
that cannot be written (`trainer.checkpoint_dir` included); a checkpoint target a save must not
replace, or one holding the base model the new checkpoint would refer to. `held` then locks
every output for the whole run: a second writer is refused (`toolkit.io.files.hold`).

What a subcommand writes is its row in `toolkit.cli.main.COMMANDS`: `outputs`, a tuple of the
functions below (recipe -> its outputs, none when the recipe turns that one off), and `inputs`,
what it reads beside the inputs every command has (`inputs`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.core.errors import ConfigError
from toolkit.io import json_reader, provenance, reports
from toolkit.io.files import check_writable, hold
from toolkit.io.layout import CONFIG_FILE, check_target, inside
from toolkit.recipes.schema import Recipe

# Environment variables that mark a process as one of several ranks (Lightning's DDP launcher
# re-executes the command line in the others; torchrun and SLURM set them for every rank).
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


@dataclass(frozen=True)
class Output:
    key: str
    path: str
    kind: str  # "checkpoint", "dir", "file" (appended JSONL) or "reports" (names in `reports`)
    reports: tuple[str, ...] = ()
    force_key: str = ""
    force: bool = False


def checkpoint(recipe: Recipe) -> list[Output]:
    """The augmented checkpoint a command saves."""
    return [Output("output_dir", recipe.output_dir, "checkpoint")]


def token_checkpoint(recipe: Recipe) -> list[Output]:
    """The token-level head's checkpoint of the arith_writing task (`token_head`)."""
    if not _token_head(recipe):
        return []
    return [Output("output_dir", f"{recipe.output_dir}-token", "checkpoint")]


def training_logs(recipe: Recipe) -> list[Output]:
    """work_dir: the trainer's logs."""
    return [Output("work_dir", recipe.work_dir, "reports")]


def run_report(recipe: Recipe) -> list[Output]:
    """work_dir: the trainer's logs and the pipeline's report.json."""
    return [Output("work_dir", recipe.work_dir, "reports", ("report.json",))]


def trainer_checkpoints(recipe: Recipe) -> list[Output]:
    """Lightning's checkpoints, when trainer.checkpoint_dir is set."""
    if not recipe.trainer.checkpoint_dir:
        return []
    return [Output("trainer.checkpoint_dir", recipe.trainer.checkpoint_dir, "dir")]


def pairs(recipe: Recipe) -> list[Output]:
    """The preference pairs collection appends to."""
    return [Output("data.pairs", recipe.data.pairs, "file", force_key="collect.force_resume",
                   force=recipe.collect.force_resume)]


def completions(recipe: Recipe) -> list[Output]:
    """generate.output, when set (else the replies go to the terminal)."""
    if not recipe.generate.output:
        return []
    return [Output("generate.output", recipe.generate.output, "file",
                   force_key="generate.force_resume", force=recipe.generate.force_resume)]


def eval_reports(recipe: Recipe) -> list[Output]:
    from toolkit.eval.report import FILES

    return [Output("eval.output_dir", recipe.eval.output_dir, "reports", FILES)]


def bench_reports(recipe: Recipe) -> list[Output]:
    from toolkit.bench.config import FILES

    return [Output("bench.output_dir", recipe.bench.output_dir, "reports", FILES)]


def pairs_input(recipe: Recipe) -> list[tuple[str, str | None]]:
    """data.pairs as an input (training reads the pairs)."""
    return [("data.pairs", recipe.data.pairs)]


def outputs(command: Any, recipe: Recipe) -> list[Output]:
    """What `command` (a row of `COMMANDS`) writes with this recipe."""
    return [out for found in command.outputs for out in found(recipe)]


def _token_head(recipe: Recipe) -> bool:
    return (recipe.data.prompts is None and recipe.data.task == "arith_writing"
            and recipe.data.arith_writing.token_head)


def inputs(command: Any, recipe: Recipe, recipe_file: str | None) -> list[tuple[str, str]]:
    """(key, path) of every file or folder the run reads: those of every command, then the
    row's own `inputs`."""
    named = [
        ("the recipe", recipe_file), ("model.path", recipe.model.path),
        ("generate.input", recipe.generate.input), ("data.prompts", recipe.data.prompts),
        ("eval.data_path", recipe.eval.data_path), ("train.val_pairs", recipe.train.val_pairs),
        ("trainer.ckpt_path", recipe.trainer.ckpt_path),
        ("collect.reward.model_path", recipe.collect.reward.model_path),
    ]
    named += [pair for found in command.inputs for pair in found(recipe)]
    return [(key, str(path)) for key, path in named if path]


def check(command: Any, recipe: Recipe, recipe_file: str | None = None) -> None:
    """Refuse, before any model loads, every output this run must not write."""
    read = inputs(command, recipe, recipe_file)
    for out in outputs(command, recipe):
        for name in (out.path, *(os.path.join(out.path, r) for r in out.reports)):
            _not_an_input(out.key, name, [
                (key, path) for key, path in read  # a head-only checkpoint retrains in place
                if not (out.kind == "checkpoint" and key == "model.path" and _same(path, name))])
        if out.kind == "checkpoint":
            target = check_target(out.path, out.key)
            _not_its_base(recipe, target)
        if out.kind == "file":
            provenance.owned(out.path, out.force_key, out.force)
        if out.kind == "reports":
            reports.check(out.path, out.reports, out.key)
        check_writable(out.path, out.key, is_dir=out.kind != "file")


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _not_an_input(key: str, path: str, read: list[tuple[str, str]]) -> None:
    for input_key, source in read:
        if _same(path, source) or (Path(source).is_dir() and inside(path, source)):
            where = "is" if _same(path, source) else "lies inside"
            raise ConfigError(
                f"{key}={path!r} {where} {input_key} {source!r}, which this run reads; an "
                f"output is never an input: set {key} to another path"
            )


def _not_its_base(recipe: Recipe, target: Path) -> None:
    """A checkpoint saved from model.path refers to model.path's base model: refuse a target
    that holds it (a self-contained checkpoint trained into itself)."""
    source = recipe.model.path
    if not source or not (Path(source) / CONFIG_FILE).is_file():
        return
    try:
        base = json_reader.load(Path(source) / CONFIG_FILE).get("base")
    except (OSError, ValueError, AttributeError):
        return
    from toolkit.sources.references import on_hub, read_reference

    if not isinstance(base, str) or on_hub(base):
        return
    base_path = Path(read_reference(base, Path(source).resolve(), prepare=False))
    if inside(base_path, target):
        raise ConfigError(
            f"output_dir={recipe.output_dir!r} holds the base model of model.path={source!r} "
            f"({base_path}); the new checkpoint refers to that base, so a save there would "
            "delete it: set output_dir to another directory"
        )


def _rank_zero() -> bool:
    return all(os.environ.get(name, "0") == "0" for name in _RANK_VARIABLES)


@contextmanager
def held(command: Any, recipe: Recipe) -> Iterator[None]:
    """Lock every output of the run for its whole length (in the launching process only: the
    other ranks of a multi-process run write under its locks)."""
    with ExitStack() as stack:
        if _rank_zero():
            for out in outputs(command, recipe):
                stack.enter_context(hold(out.path, out.key, is_dir=out.kind != "file"))
        yield
