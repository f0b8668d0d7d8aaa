"""Hugging Face Hub ids as model sources: `model.path`, `AugmentedModel.graft/from_pretrained`
and a checkpoint's base reference may name `org/name` instead of a local directory.

The files come through `huggingface_hub.snapshot_download` (config, tokenizer, safetensors
weights, our checkpoint files) into its cache; later runs reuse it, offline too with
`HF_HUB_OFFLINE=1`. With no network and nothing cached, one line says what to do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from toolkit.errors import CheckpointError

# What a causal LM or an AugmentedModel checkpoint needs (no .bin/.pt/.gguf duplicates).
PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja",
            "custom_generate/*"]
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_hub_id(source) -> bool:
    """`org/name` that is not an existing local path (nor written like one)."""
    text = str(source)
    if Path(text).exists() or text.startswith((".", "/", "~")) or "\\" in text:
        return False
    parts = text.split("/")
    return len(parts) == 2 and all(_PART.fullmatch(p) for p in parts)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve(source) -> Path:
    """A local directory for `source`: the path itself, or the Hub snapshot of a Hub id."""
    if not is_hub_id(source):
        return Path(source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=str(source), allow_patterns=PATTERNS,
                                      cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                                      local_files_only=_offline()))
    except Exception as err:  # network, auth, missing repo, empty cache: all end the same way
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot get {source!r} from the Hugging Face Hub ({reason[:160]}); give a local "
            f"model directory instead, or download it where there is network "
            f"(huggingface-cli download {source}) and run with HF_HUB_OFFLINE=1"
        ) from err
