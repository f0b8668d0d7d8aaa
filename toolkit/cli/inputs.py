"""Checks of input files against the model, read from its config files before any weights load:
prompt files (UTF-8, non-empty prompts), pair files (one pair per prompt id, token ids inside
the vocabulary, temperature indices inside the grid), lengths against the model's positions,
and a recipe `graft` section that a checkpoint would silently override.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from toolkit.errors import ConfigError
from toolkit.options import GraftConfig
from toolkit.recipes.models import ModelFacts, model_facts
from toolkit.recipes.schema import Recipe


def check_inputs(command: str, recipe: Recipe) -> None:
    """Fail before loading the model on inputs it could not use; note options that do nothing."""
    _note_no_ops(recipe)
    if recipe.model.random_shape:
        return
    facts = model_facts(recipe.model)
    _check_graft(recipe, facts)
    if command in ("generate", "run"):
        _check_positions("decoding.max_new_tokens", recipe.decoding.max_new_tokens, facts)
    if command in ("collect", "run"):
        _check_positions("collect.max_new_tokens", recipe.collect.max_new_tokens, facts)
        if recipe.data.prompts:
            from toolkit.jsonl import read_prompts

            read_prompts(recipe.data.prompts, recipe.data.prompt_field, key="data.prompts")
    if command == "train":
        from toolkit.lpo.pairs import read_pairs

        grid = facts.graft.head.temperatures if facts.graft else recipe.graft.head.temperatures
        read_pairs(recipe.data.pairs, facts.vocab_size, len(grid))


def _note_no_ops(recipe: Recipe) -> None:
    top = recipe.decoding.top_n_sigma
    if top.enabled and top.n <= 0:
        print(
            f"note: decoding.top_n_sigma.n={top.n:g} <= 0 keeps every token, so top-n-sigma does "
            "nothing (as in llama.cpp); give n > 0 to filter",
            file=sys.stderr,
        )


def _check_positions(key: str, value: int, facts: ModelFacts) -> None:
    if facts.max_positions and value >= facts.max_positions:
        raise ConfigError(
            f"{key}={value} does not fit the model's {facts.max_positions} positions (prompt "
            f"included); choose a value below {facts.max_positions}"
        )


def _check_graft(recipe: Recipe, facts: ModelFacts) -> None:
    """A checkpoint keeps the graft it was saved with: refuse a recipe graft that differs."""
    if facts.graft is None or recipe.graft == GraftConfig() or recipe.graft == facts.graft:
        return
    ours, theirs = dataclasses.asdict(recipe.graft), dataclasses.asdict(facts.graft)
    diff = [f"graft.{k}: recipe {ours[k]!r} vs checkpoint {theirs[k]!r}"
            for k in ours if ours[k] != theirs[k]]
    raise ConfigError(
        f"model.path={str(Path(recipe.model.path))!r} is a checkpoint, which keeps the graft it "
        f"was saved with, but the recipe's graft section differs ({'; '.join(diff)}); remove "
        "the graft section or make it match"
    )
