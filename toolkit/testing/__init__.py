"""Tiny seeded models and an offline tokenizer for tests, examples and quick experiments.

`build_tiny_model` builds the hand-tuned families; `build_any_tiny` a tiny random model of any
causal-LM type in the installed transformers (`toolkit.testing.coverage` runs them all);
`random_model` a Llama of a named shape with random weights (benchmarks without a checkpoint).
"""

from toolkit.testing.architectures import build_any_tiny, excluded, tiny_any_config
from toolkit.testing.models import (
    INITIALIZER_RANGE,
    TINY_FAMILIES,
    build_tiny_model,
    save_tiny,
    tiny_config,
)
from toolkit.testing.shapes import SHAPES, random_model
from toolkit.testing.tokenizer import build_tokenizer

__all__ = [
    "build_any_tiny",
    "excluded",
    "tiny_any_config",
    "TINY_FAMILIES",
    "INITIALIZER_RANGE",
    "SHAPES",
    "build_tiny_model",
    "build_tokenizer",
    "random_model",
    "save_tiny",
    "tiny_config",
]
