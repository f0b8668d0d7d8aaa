"""Turn a recipe's `model` section into an `AugmentedModel`.

Every check that can fail (directory missing, no config.json, unsupported architecture) runs on
the files alone, before any weights are read.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from toolkit.core import runtime
from toolkit.core.errors import CheckpointError, ConfigError, UnsupportedArchitectureError
from toolkit.io import atomic, json_reader
from toolkit.io.layout import CONFIG_FILE, is_complete
from toolkit.methods.options import GraftConfig
from toolkit.recipes.model_files import check_graft
from toolkit.recipes.schema import ModelConfig
from toolkit.sources.base import check_weight_files, load_base, resolve_dtype, saved_dtype
from toolkit.sources.hub import is_hub_id, local_dir
from toolkit.sources.presets import (
    CACHE_ENV,
    cache_dir,
    check_preset,
    prepare_preset,
    publish_to_cache,
)

if TYPE_CHECKING:
    from toolkit.graft.augmented import AugmentedModel

__all__ = ["CACHE_ENV", "cache_dir", "check_model", "load_model"]


def check_model(config: ModelConfig) -> None:
    """Fail fast, before any weights load, on a model source that cannot work."""
    if config.path and config.gguf_file:
        from toolkit.sources.gguf import check_gguf

        check_gguf(config.path, config.gguf_file)
    elif config.path and not is_hub_id(config.path):
        _check_local(Path(config.path))
    elif config.preset:
        check_preset(config.preset)
    elif config.tiny:
        from toolkit.testing import TINY_FAMILIES

        if config.tiny not in TINY_FAMILIES:
            raise ConfigError(
                f"model.tiny={config.tiny!r} is not a built-in tiny family; "
                f"choose one of {', '.join(TINY_FAMILIES)}"
            )


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_model(config: ModelConfig, graft: GraftConfig | None = None,
               say: Callable[[str], None] = to_stderr) -> AugmentedModel:
    """The recipe's model: its `model` section made into an AugmentedModel.

    Args:
        config: a local directory (or a GGUF file in it), a preset, the built-in tiny model or
            a random shape. A directory holding augment_config.json is an augmented checkpoint
            and loads as saved (its own graft config wins over `graft`); any other directory is
            a base model, loaded by the one base loader (`sources.base.load_base`) and grafted. A
            preset is prepared once into the cache, then loads like any local directory.
        graft: what to graft onto a base model (default: `GraftConfig()`).
        say: gets the progress and dtype lines (default: stderr, so that stdout holds only
            results); a CLI run also says its thread count and allocator (`toolkit.core.runtime`).

    Returns:
        The AugmentedModel.
    """
    check_model(config)
    model = _load(config, graft, say)
    line = runtime.describe()  # set by the CLI (runtime section), None otherwise
    if line:
        say(line)
    return model


def _load(config: ModelConfig, graft: GraftConfig | None, say: Callable[[str], None]) -> Any:
    if config.random_shape:
        return _random_model(config, graft)
    if config.gguf_file:
        return _load_gguf(config, graft, say)
    if config.preset:
        path = prepare_preset(config.preset, say=say)
    elif config.path and is_hub_id(config.path):
        say(f"fetching {config.path} from the Hugging Face Hub (or its local cache)")
        path = local_dir(config.path)
        _check_local(path)
        return _load_local(path, config, graft, say, hub_id=config.path)
    else:
        path = Path(config.path) if config.path else tiny_model_dir(config.tiny, config.seed)
    return _load_local(path, config, graft, say)


def tiny_model_dir(family: str, seed: int = 0) -> Path:
    """The saved built-in tiny model (written once, atomically, then reused)."""
    from toolkit.testing import save_tiny

    target = cache_dir() / f"tiny-{family}-seed{seed}"
    if not (target / "config.json").is_file():
        publish_to_cache(target, lambda staging: save_tiny(staging, family=family, seed=seed),
                         ready=lambda path: (path / "config.json").is_file())
    return target


def _check_local(path: Path) -> None:
    _recover(path)
    if not path.is_dir():
        what = "is not a directory" if path.exists() else (
            "does not exist (written as a local path, so not looked up on the Hub)")
        raise ConfigError(
            f"model.path={str(path)!r} {what}; set model.path to a local model "
            "directory (with config.json), an augmented checkpoint or a Hub id (org/name)"
        )
    if (path / CONFIG_FILE).is_file():
        return
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{path} has no config.json or {CONFIG_FILE}; point model.path at the directory "
            "that save_pretrained wrote"
        )
    _check_architecture(config_file)
    check_weight_files(path)


def _recover(path: Path) -> None:
    """Complete what a save killed between its two renames left (the old checkpoint under
    `.NAME.old-*`, no NAME), as loading it would (`toolkit.io.atomic.recover`), so the checks
    see the checkpoint; where nothing can be renamed they see what is there."""
    with contextlib.suppress(OSError, ValueError):
        atomic.recover(path.resolve(), is_complete)


def _check_architecture(config_file: Path) -> None:
    from toolkit.graft.families import refusal

    try:
        config = json_reader.load(config_file)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_file} is not valid JSON (line {err.lineno})") from None
    for model_type in (config.get("model_type"), (config.get("text_config") or {}).get("model_type")):
        reason = refusal(model_type) if model_type else None
        if reason:
            raise UnsupportedArchitectureError(
                f"{config_file.parent}: model_type {model_type!r} is not supported: {reason}")


def _load_local(path: Path, config: ModelConfig, graft: GraftConfig | None, say,
                hub_id: str | None = None) -> Any:
    """Load from a local directory (`hub_id`: the Hub id it is the snapshot of)."""
    from toolkit.graft.augmented import AugmentedModel

    dtype, line = resolve_dtype(config.dtype, config.device_map, saved_dtype(path))
    say(line)
    if (path / CONFIG_FILE).is_file():
        model = AugmentedModel.from_pretrained(path, device_map=config.device_map, dtype=dtype)
        if graft is not None:
            check_graft(config.path, graft, model.graft_config)
        return model
    base, tokenizer = load_base(path, config.device_map, dtype)
    if hub_id:  # checkpoints then refer to the Hub id, not to the cache folder
        base.name_or_path = base.config._name_or_path = hub_id
    return _graft(base, tokenizer, config, graft)


def _load_gguf(config: ModelConfig, graft: GraftConfig | None, say) -> Any:
    from toolkit.sources.gguf import load_gguf

    dtype, line = resolve_dtype(config.dtype, config.device_map, "float32")
    say(f"dequantizing {Path(config.path) / config.gguf_file}; {line}")
    base, tokenizer = load_gguf(config.path, config.gguf_file, dtype, config.device_map)
    return _graft(base, tokenizer, config, graft)


def _graft(base: Any, tokenizer: Any, config: ModelConfig, graft: GraftConfig | None) -> Any:
    from toolkit.graft.augmented import AugmentedModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return AugmentedModel.graft(base.eval(), graft or GraftConfig(), tokenizer=tokenizer)


def _random_model(config: ModelConfig, graft: GraftConfig | None) -> Any:
    from toolkit.graft.augmented import AugmentedModel
    from toolkit.testing.shapes import random_model

    dtype = torch.float32 if config.dtype == "auto" else getattr(torch, config.dtype)
    device = config.device_map if config.device_map not in (None, "auto") else "cpu"
    base = random_model(config.random_shape, dtype, device, config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return AugmentedModel.graft(base, graft or GraftConfig())
