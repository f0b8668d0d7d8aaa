"""Shared fixtures: tiny seeded models saved to disk once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.testing import save_tiny


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Factory: `tiny_model_dir(family, seed=0)` -> a saved tiny model + tokenizer dir (cached)."""
    cache: dict[tuple[str, int], Path] = {}

    def make(family: str = "llama", seed: int = 0) -> Path:
        key = (family, seed)
        if key not in cache:
            cache[key] = save_tiny(tmp_path_factory.mktemp(f"tiny-{family}-{seed}"), family, seed)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_llama_dir(tiny_model_dir) -> Path:
    """A saved tiny llama (seed 0) with its tokenizer."""
    return tiny_model_dir("llama")
