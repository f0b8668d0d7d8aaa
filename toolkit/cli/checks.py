"""Checks on files and option combinations that must fail before any model loads."""

from __future__ import annotations

from pathlib import Path

from toolkit.cli import outputs
from toolkit.cli.outputs import SAVING
from toolkit.errors import ConfigError, DataError
from toolkit.layout import inside
from toolkit.recipes.models import check_model
from toolkit.recipes.schema import Recipe


def preflight(command: str, recipe: Recipe, recipe_file: str | None = None) -> None:
    """Checks on files and combinations that must fail before any model loads (`recipe_file`:
    the recipe's own path, which no output may name)."""
    if recipe.model.random_shape and command != "bench":
        raise ConfigError(
            f"model.random_shape is for bench only; `{command}` needs model.path or model.tiny"
        )
    check_model(recipe.model)
    if command == "generate":
        _check_generate(recipe)
    if command in ("collect", "run"):
        if recipe.data.prompts:
            _need_file(recipe.data.prompts, "data.prompts")
        reward = recipe.collect.reward
        if reward.kind == "reward_model" and not Path(reward.model_path).is_dir():
            raise DataError(
                f"collect.reward.model_path={reward.model_path!r} is not a directory; point it "
                "at a local AutoModelForSequenceClassification directory"
            )
    if command == "train":
        _need_file(recipe.data.pairs, "data.pairs", hint="run `collect` first")
        _check_ckpt_path(recipe.trainer.ckpt_path)
    if command == "eval" and recipe.eval.task != "arithmetic":
        _need_file(recipe.eval.data_path, "eval.data_path")
    _check_outputs(command, recipe, recipe_file)
    from toolkit.cli.inputs import check_inputs

    check_inputs(command, recipe)


def _check_outputs(command: str, recipe: Recipe, recipe_file: str | None) -> None:
    """Every output may be written (`toolkit.cli.outputs`), and no input or work file sits
    where a save replaces all."""
    outputs.check(command, recipe, recipe_file)
    if command in SAVING:
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


def _check_generate(recipe: Recipe) -> None:
    gen = recipe.generate
    if not gen.prompts and not gen.input:
        raise ConfigError(
            "no prompts: set generate.prompts='[Once upon a time]' or generate.input=prompts.jsonl"
        )
    if gen.input:
        _need_file(gen.input, "generate.input")
    if parallel(recipe):
        if not gen.output:
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


def _need_file(path: str, key: str, hint: str = "") -> None:
    if not path or not Path(path).is_file():
        extra = f"; {hint}" if hint else ""
        raise DataError(f"{key}={path!r}: file not found{extra}")
