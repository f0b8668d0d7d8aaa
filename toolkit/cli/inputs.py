"""Checks of input files against the model, read from its config files before any weights load:
prompt files (UTF-8, non-empty prompts), pair files (one pair per prompt id, token ids inside
the vocabulary, temperature indices inside the grid), lengths against the model's positions,
and a recipe `graft` section that a checkpoint would silently override.
"""

from __future__ import annotations

import sys

from toolkit.errors import ConfigError
from toolkit.recipes.facts import ModelFacts, check_graft, model_facts
from toolkit.recipes.schema import Recipe


def check_inputs(command: str, recipe: Recipe) -> None:
    """Fail before loading the model on inputs it could not use; note options that do nothing."""
    _note_no_ops(recipe)
    if recipe.model.random_shape:
        return
    facts = model_facts(recipe.model)
    if facts.graft is not None:
        check_graft(recipe.model.path, recipe.graft, facts.graft)
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
        read_pairs(recipe.data.pairs, facts.vocab_size, len(grid), facts.max_positions)


def _note_no_ops(recipe: Recipe) -> None:
    top = recipe.decoding.top_n_sigma
    if top.n <= 0:
        print(
            f"note: decoding.top_n_sigma.n={top.n:g} <= 0 switches top-n-sigma off (as in "
            "llama.cpp); give n > 0 to filter",
            file=sys.stderr,
        )


def _check_positions(key: str, value: int, facts: ModelFacts) -> None:
    if facts.max_positions and value >= facts.max_positions:
        raise ConfigError(
            f"{key}={value} does not fit the model's {facts.max_positions} positions (prompt "
            f"included); choose a value below {facts.max_positions}"
        )
