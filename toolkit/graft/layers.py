"""Candidate early-exit layers (docs/methods.md section 1)."""

from __future__ import annotations

from typing import Any

from toolkit.core.errors import ConfigError, check_choice
from toolkit.methods.options import LAYER_BUCKETS


def candidate_layers(spec: Any, num_layers: int, tied: bool, key: str = "layers") -> list[int]:
    """Candidate layer indices for a model with `num_layers` decoder layers.

    `spec`: 'all' (or None) -> 0..L-1, or 1..L-1 when embeddings are tied (layer-0 logits of a
    tied model are degenerate); 'low'/'high' -> DoLa's buckets as transformers defined them
    (start = 2 when tied, else 0; L <= 40: range(start, L//2, 2) / range(L//2, L, 2); deeper:
    range(start, 20, 2) / range(L-20, L, 2)); a list -> those indices, each in 0..L (L means
    the model's own final logits). `key` names the option in error messages.
    """
    if spec is None or spec == "all":
        layers = list(range(1 if tied else 0, num_layers))
    elif isinstance(spec, str):
        check_choice(key, spec, LAYER_BUCKETS + ("a list of layer indices",))
        layers = _bucket(spec, num_layers, tied)
    else:
        return _explicit(key, spec, num_layers)
    if not layers:
        kind = "tied-embedding " if tied else ""
        raise ConfigError(
            f"{key}={spec!r} selects no layer of this {num_layers}-layer {kind}model; "
            f"give an explicit list of layer indices in 0..{num_layers}"
        )
    return layers


def _bucket(spec: str, num_layers: int, tied: bool) -> list[int]:
    start = 2 if tied else 0
    if num_layers <= 40:
        low, high = range(start, num_layers // 2, 2), range(num_layers // 2, num_layers, 2)
    else:
        low, high = range(start, 20, 2), range(num_layers - 20, num_layers, 2)
    return list(low if spec == "low" else high)


def _explicit(key: str, spec: Any, num_layers: int) -> list[int]:
    try:
        items = list(spec)
    except TypeError:
        raise ConfigError(
            f"{key}={spec!r} is not allowed; give 'all', 'low', 'high' or a list of layer indices"
        ) from None
    if not items:
        raise ConfigError(f"{key}=[] is empty; give at least one layer index in 0..{num_layers}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= num_layers:
            raise ConfigError(
                f"{key} contains {item!r}; layer indices must be integers in 0..{num_layers} "
                f"for this {num_layers}-layer model"
            )
    if len(set(items)) != len(items):
        raise ConfigError(f"{key}={items!r} repeats a layer; list each layer once")
    return items
