"""What a recipe's model files say before any weights load (`read_model_files`: vocabulary
size, positions, the graft a checkpoint was saved with), and the check that a recipe's graft
matches a checkpoint's (`check_graft`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from toolkit.core.errors import ConfigError
from toolkit.io import json_reader
from toolkit.io.layout import CONFIG_FILE
from toolkit.methods.options import GraftConfig
from toolkit.recipes.schema import ModelConfig


def check_graft(path: str, wanted: GraftConfig, saved: GraftConfig) -> None:
    """A checkpoint keeps the graft it was saved with: refuse a graft config that differs
    (the default GraftConfig() means "not given"; so does an unset early_exit_norm, which the
    checkpoint resolved to its model type's default when it was grafted)."""
    if wanted.early_exit_norm is None:
        wanted = dataclasses.replace(wanted, early_exit_norm=saved.early_exit_norm)
    not_given = dataclasses.replace(GraftConfig(), early_exit_norm=saved.early_exit_norm)
    if wanted in (not_given, saved):
        return
    ours, theirs = dataclasses.asdict(wanted), dataclasses.asdict(saved)
    diff = [f"graft.{k}: recipe {ours[k]!r} vs checkpoint {theirs[k]!r}"
            for k in ours if ours[k] != theirs[k]]
    raise ConfigError(
        f"model.path={str(path)!r} is a checkpoint, which keeps the graft it was saved with, but "
        f"the recipe's graft section differs ({'; '.join(diff)}); remove the graft section or "
        "make it match"
    )


@dataclass
class ModelFileInfo:
    """What the config files tell about a model before its weights load."""

    vocab_size: int | None = None
    max_positions: int | None = None
    graft: GraftConfig | None = None  # set when model.path is an augmented checkpoint


def read_model_files(config: ModelConfig) -> ModelFileInfo:
    """Vocabulary size, positions and (for a checkpoint) the saved graft, from files only."""
    if config.tiny:
        from toolkit.testing import tiny_config

        text = tiny_config(config.tiny, config.seed)
        return ModelFileInfo(text.vocab_size, getattr(text, "max_position_embeddings", None))
    if not config.path or config.gguf_file:
        return ModelFileInfo()  # a preset or a GGUF file: known once loaded
    path = Path(config.path)
    if not (path / CONFIG_FILE).is_file():
        return _read_config_json(path / "config.json")
    from toolkit.graft.checkpoint import read_config
    from toolkit.sources.references import on_hub, read_reference

    directory, saved, graft, _ = read_config(path)
    if on_hub(saved["base"]):  # on the Hub: its config is read once it is fetched
        info = ModelFileInfo()
    else:
        base = Path(read_reference(saved["base"], directory, prepare=False))
        info = _read_config_json(base / "config.json")
    info.vocab_size = saved["base_fingerprint"]["keys"].get("vocab_size", info.vocab_size)
    info.graft = graft
    return info


def _read_config_json(config_file: Path) -> ModelFileInfo:
    try:
        data = json_reader.load(config_file)
    except (OSError, ValueError):
        return ModelFileInfo()
    text = data.get("text_config") or data
    return ModelFileInfo(text.get("vocab_size"), text.get("max_position_embeddings"))
