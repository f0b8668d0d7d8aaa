"""Errors meant for people: each names the thing that is wrong and the fix.

The CLI turns every `ToolkitError` into one line on stderr and exit code 2.
"""

import math
import re


class ToolkitError(Exception):
    """Base class of the toolkit's user-facing errors."""


class ConfigError(ToolkitError, ValueError):
    """A recipe or option has an unknown key, a wrong type or a value out of range."""


class UnsupportedArchitectureError(ToolkitError, ValueError):
    """The base model's architecture cannot be grafted (discovery or the graft-time probe failed)."""


class CheckpointError(ToolkitError):
    """A checkpoint is missing, corrupted, or was grafted on another base model."""


class DataError(ToolkitError, ValueError):
    """An input data file has a malformed line or row (the message names file and line)."""


class NonFiniteLogitsError(ToolkitError, RuntimeError):
    """The model produced NaN or +inf logits (or a row with every token masked) at a step."""


def reason(err: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type's name when it has none), cut at a
    word boundary to about `limit` characters, for quoting inside a one-line error."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # no terminal colour codes
    text = plain.splitlines()[0].strip() if plain else type(err).__name__
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:") + " ..."


def check_choice(key: str, value, allowed) -> None:
    """Raise ConfigError unless `value` is one of `allowed`, naming the key and the choices."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {choices}")


def check_finite(key: str, value) -> None:
    """Raise ConfigError when a float option is NaN or infinite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} is not a finite number; give a finite value")


def check_range(key: str, value, *, low=None, high=None, low_open=False) -> None:
    """Raise ConfigError unless `value` is finite and low <= value <= high (low < value when
    low_open)."""
    check_finite(key, value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else f"<= {high}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise ConfigError(f"{key}={value!r} is out of range; it must be {bounds}")


LAYER_BUCKETS = ("all", "low", "high")


def check_layers(key: str, layers) -> None:
    """Candidate layers are 'all', 'low', 'high' or a non-empty list of distinct ints >= 0."""
    if layers is None or (isinstance(layers, str) and layers in LAYER_BUCKETS):
        return
    if isinstance(layers, str):
        check_choice(key, layers, LAYER_BUCKETS + ("a list of layer indices",))
    items = list(layers)
    if not items or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in items):
        raise ConfigError(
            f"{key}={items!r} is not allowed; give 'all', 'low', 'high' or a non-empty list "
            "of layer indices >= 0"
        )
    if len(set(items)) != len(items):
        raise ConfigError(f"{key}={items!r} repeats a layer; list each layer once")
