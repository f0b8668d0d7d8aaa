"""The one tokenizer loader: transformers' AutoTokenizer with remote code off.

A tokenizer_config.json can name code of its own (`auto_map`); transformers then raises, or on
a terminal asks whether to run it. `load_tokenizer` passes `trust_remote_code=False`, so no
such code runs and nothing is asked, and turns every failure into one CheckpointError naming
the file and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from toolkit.core.errors import CheckpointError, reason
from toolkit.io import json_reader

TOKENIZER_CONFIG = "tokenizer_config.json"


def load_tokenizer(directory, **kwargs) -> Any:
    """`AutoTokenizer.from_pretrained(directory, **kwargs)` with remote code off (transformers
    neither runs code a tokenizer_config.json names in `auto_map` nor asks on a terminal
    whether to); CheckpointError naming the file and the fix when the tokenizer needs such
    code or its files do not load."""
    try:
        return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False, **kwargs)
    except (OSError, ValueError, RecursionError) as err:
        path = Path(directory) / TOKENIZER_CONFIG
        if _names_code(path):
            raise CheckpointError(
                f"{path} names custom tokenizer code (auto_map), which this toolkit never runs; "
                "set its tokenizer_class to a tokenizer transformers ships (e.g. "
                "PreTrainedTokenizerFast) and delete auto_map, or use a model whose tokenizer "
                "needs no code"
            ) from err
        raise CheckpointError(
            f"cannot load the tokenizer in {directory} ({reason(err)}); its files are missing or "
            "corrupted: copy them again"
        ) from err


def _names_code(path: Path) -> bool:
    try:
        config = json_reader.load(path)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "auto_map" in config
