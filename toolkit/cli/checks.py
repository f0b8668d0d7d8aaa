"""Checks on files and option combinations that must fail before any model loads."""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import ConfigError, DataError
from toolkit.recipes.models import check_model
from toolkit.recipes.schema import Recipe


def preflight(command: str, recipe: Recipe) -> None:
    """Checks on files and combinations that must fail before any model loads."""
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
    if command == "eval":
        _need_file(recipe.eval.data_path, "eval.data_path")


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
