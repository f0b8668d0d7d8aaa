"""The CLI's checks before any model loads (`preflight`): files that must exist, option
combinations, every output (`toolkit.cli.outputs`), and the inputs against what the model's
config files say: prompt files (UTF-8, non-empty prompts), pair files (one pair per prompt id,
token ids inside the vocabulary, temperature indices inside the grid), lengths against the
model's positions, and a recipe `graft` section that a checkpoint would silently override.

What a subcommand checks is its row in `toolkit.cli.main.COMMANDS`: `checks` (recipe -> None,
on files and option combinations), `model_checks` ((recipe, what the model's config files say)
-> None) and `random_shape` (whether it runs on a random-weight model); the functions are here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toolkit.cli import outputs
from toolkit.core.errors import ConfigError, DataError
from toolkit.io.files import check_writable
from toolkit.io.layout import inside
from toolkit.recipes.model_files import ModelFileInfo, check_graft, read_model_files
from toolkit.recipes.schema import Recipe


def preflight(name: str, commands: Mapping[str, Any], recipe: Recipe,
              recipe_file: str | None = None) -> None:
    """Checks on files and combinations that must fail before any model loads, for subcommand
    `name` of the table `commands` (`recipe_file`: the recipe's own path, which no output may
    name)."""
    command = commands[name]
    if recipe.model.random_shape and not command.random_shape:
        allowed = " and ".join(n for n, c in commands.items() if c.random_shape)
        raise ConfigError(
            f"model.random_shape is for {allowed} only; `{name}` needs model.path or model.tiny"
        )
    from toolkit.recipes.models import check_model

    check_model(recipe.model)
    for check in command.checks:
        check(recipe)
    _check_outputs(command, recipe, recipe_file)
    _check_against_model(command, recipe)


def check_generate(recipe: Recipe) -> None:
    """Prompts given, and a sharded run set up to write a file."""
    gen = recipe.generate
    if not gen.prompts and not gen.input:
        raise ConfigError(
            "no prompts: set generate.prompts='[Once upon a time]' or generate.input=prompts.jsonl"
        )
    if gen.input:
        _need_input(gen.input, "generate.input")
    if parallel(recipe):
        _check_sharded(recipe)


def check_collect(recipe: Recipe) -> None:
    """The prompt file exists, and a reward model is a directory."""
    if recipe.data.prompts:
        _need_input(recipe.data.prompts, "data.prompts")
    reward = recipe.collect.reward
    if reward.kind == "reward_model" and not Path(reward.model_path).is_dir():
        raise DataError(
            f"collect.reward.model_path={reward.model_path!r} is not a directory; point it "
            "at a local AutoModelForSequenceClassification directory"
        )


def check_train(recipe: Recipe) -> None:
    """The pairs exist and their folder takes the feature cache; a resume checkpoint loads."""
    _need_file(recipe.data.pairs, "data.pairs", hint="run `collect` first")
    _check_ckpt_path(recipe.trainer.ckpt_path)
    check_writable(recipe.data.pairs, "data.pairs (its feature cache is written beside it)")


def check_eval(recipe: Recipe) -> None:
    """The dataset exists (the built-in arithmetic task needs none)."""
    if recipe.eval.task != "arithmetic":
        _need_input(recipe.eval.data_path, "eval.data_path")


def _check_outputs(command: Any, recipe: Recipe, recipe_file: str | None) -> None:
    """Every output may be written (`toolkit.cli.outputs`), and no input or work file sits
    where a save replaces all."""
    outputs.check(command, recipe, recipe_file)
    if any(out.kind == "checkpoint" for out in outputs.outputs(command, recipe)):
        _check_layout(recipe, Path(recipe.output_dir).resolve())


def _check_layout(recipe: Recipe, target: Path) -> None:
    paths = {
        "model.path": recipe.model.path, "work_dir": recipe.work_dir,
        "data.prompts": recipe.data.prompts, "data.pairs": recipe.data.pairs,
        "trainer.checkpoint_dir": recipe.trainer.checkpoint_dir,
        "trainer.ckpt_path": recipe.trainer.ckpt_path, "generate.input": recipe.generate.input,
        "generate.output": recipe.generate.output,
    }
    for key, value in paths.items():
        if not value or (key == "model.path" and Path(value).resolve() == target):
            continue
        if inside(value, target):
            raise ConfigError(
                f"{key}={value!r} is inside output_dir={recipe.output_dir!r}, which a save "
                "replaces as a whole; keep inputs, work files and logs outside it (work_dir "
                "defaults to runs/NAME)"
            )


def _check_ckpt_path(path: str | None) -> None:
    """A Lightning checkpoint to resume from must exist, be an intact torch zip file and load
    with `weights_only=True` (the paths it names are checked once the trainer exists)."""
    if not path:
        return
    _need_file(path, "trainer.ckpt_path", hint="point it at a last.ckpt that training wrote")
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError):
        broken = "the archive"
    if broken:
        raise DataError(
            f"trainer.ckpt_path={path!r} is corrupted or not a Lightning checkpoint ({broken} "
            "does not read back); point it at an intact last.ckpt or unset it to start afresh"
        )
    from toolkit.lpo import resume

    resume.load(path)


def parallel(recipe: Recipe) -> bool:
    """Whether generation is sharded over several processes (trainer.devices > 1, or a list
    of several device indices)."""
    devices = recipe.trainer.devices
    if isinstance(devices, (list, tuple)):
        return len(devices) > 1
    return isinstance(devices, int) and devices > 1


def _check_sharded(recipe: Recipe) -> None:
    if not recipe.generate.output:
        raise ConfigError(
            "generate with trainer.devices > 1 writes a file; set generate.output=out.jsonl"
        )
    if recipe.trainer.strategy not in ("auto", "ddp"):
        raise ConfigError(
            f"generate shards prompts with trainer.strategy 'ddp' (or 'auto'), not "
            f"{recipe.trainer.strategy!r}: every process loads its own copy of the model"
        )
    if recipe.model.device_map:
        raise ConfigError(
            "model.device_map shards one model over devices; with trainer.devices > 1 every "
            "process holds a whole copy, so leave model.device_map unset"
        )


def _need_input(path: str, key: str) -> None:
    """A prompt source: a local file, or a `datasets` id (`toolkit.io.tables`), read later."""
    from toolkit.io import tables

    if not (tables.is_table(path) and not str(path).endswith(".parquet")):
        _need_file(path, key, "give a JSONL or Parquet file, or a datasets id ORG/NAME[:CONFIG]:SPLIT")


def _need_file(path: str, key: str, hint: str = "") -> None:
    if not path or not Path(path).is_file():
        extra = f"; {hint}" if hint else ""
        raise DataError(f"{key}={path!r}: file not found{extra}")


def _check_against_model(command: Any, recipe: Recipe) -> None:
    """Fail before loading the model on inputs it could not use; note options that do nothing."""
    _note_no_ops(recipe)
    if recipe.model.random_shape:
        return
    info = read_model_files(recipe.model)
    if info.graft is not None:
        check_graft(recipe.model.path, recipe.graft, info.graft)
    for check in command.model_checks:
        check(recipe, info)


def replies_fit(recipe: Recipe, info: ModelFileInfo) -> None:
    """decoding.max_new_tokens fits the model's positions."""
    _check_positions("decoding.max_new_tokens", recipe.decoding.max_new_tokens, info)


def prompts_fit(recipe: Recipe, info: ModelFileInfo) -> None:
    """generate.input reads, and the token ids its records give directly (`prompt_ids`) lie
    inside the model's vocabulary."""
    gen = recipe.generate
    if not gen.input:
        return
    from toolkit.graft.batching import check_vocabulary
    from toolkit.io.jsonl import read_prompts

    for number, record in read_prompts(gen.input, gen.prompt_field, token_ids=True,
                                       key="generate.input"):
        check_vocabulary(record.get("prompt_ids", ()), info.vocab_size,
                         f"{gen.input}:{number}")


def collection_fits(recipe: Recipe, info: ModelFileInfo) -> None:
    """collect.max_new_tokens fits the model's positions; the prompt file reads."""
    _check_positions("collect.max_new_tokens", recipe.collect.max_new_tokens, info)
    if recipe.data.prompts:
        from toolkit.io.jsonl import read_prompts

        read_prompts(recipe.data.prompts, recipe.data.prompt_field, token_ids=True,
                     key="data.prompts")


def pairs_fit(recipe: Recipe, info: ModelFileInfo) -> None:
    """Every pair's token ids, temperature indices and length fit the model and its head."""
    from toolkit.lpo.pairs import read_pairs

    grid = info.graft.head.temperatures if info.graft else recipe.graft.head.temperatures
    read_pairs(recipe.data.pairs, info.vocab_size, len(grid), info.max_positions)


def _note_no_ops(recipe: Recipe) -> None:
    top = recipe.decoding.top_n_sigma
    if top.n <= 0:
        print(
            f"note: decoding.top_n_sigma.n={top.n:g} <= 0 switches top-n-sigma off (as in "
            "llama.cpp); give n > 0 to filter",
            file=sys.stderr,
        )


def _check_positions(key: str, value: int, info: ModelFileInfo) -> None:
    if info.max_positions and value >= info.max_positions:
        raise ConfigError(
            f"{key}={value} does not fit the model's {info.max_positions} positions (prompt "
            f"included); choose a value below {info.max_positions}"
        )
