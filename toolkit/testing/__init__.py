"""Tiny seeded models and an offline tokenizer for tests, examples and quick experiments."""

from toolkit.testing.models import (
    INITIALIZER_RANGE,
    TINY_FAMILIES,
    build_tiny_model,
    save_tiny,
    tiny_config,
)
from toolkit.testing.tokenizer import build_tokenizer

__all__ = [
    "TINY_FAMILIES",
    "INITIALIZER_RANGE",
    "build_tiny_model",
    "build_tokenizer",
    "save_tiny",
    "tiny_config",
]
