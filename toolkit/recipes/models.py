"""Turn a recipe's `model` section into an `AugmentedModel`.

Every check that can fail (directory missing, no config.json, unsupported architecture) runs on
the files alone, before any weights are read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import CheckpointError, ConfigError, UnsupportedArchitectureError
from toolkit.options import GraftConfig
from toolkit.recipes.schema import ModelConfig

AUGMENT_CONFIG = "augment_config.json"
CACHE_ENV = "SURGERY_CACHE"


def cache_dir() -> Path:
    """Where built-in tiny models are saved once: $SURGERY_CACHE or ~/.cache/model-surgery."""
    default = Path.home() / ".cache" / "model-surgery"
    return Path(os.environ.get(CACHE_ENV) or default)


def check_model(config: ModelConfig) -> None:
    """Fail fast, before any weights load, on a model source that cannot work."""
    if config.path:
        _check_local(Path(config.path))
    elif config.tiny:
        from toolkit.testing import FAMILIES

        if config.tiny not in FAMILIES:
            raise ConfigError(
                f"model.tiny={config.tiny!r} is not a built-in tiny family; "
                f"choose one of {', '.join(FAMILIES)}"
            )


def load_model(config: ModelConfig, graft: GraftConfig | None = None) -> Any:
    """An AugmentedModel from a local directory, the built-in tiny model or a random shape.

    A directory holding augment_config.json is an augmented checkpoint and loads as saved (its
    own graft config wins over `graft`); any other directory is a base model that is grafted.
    """
    check_model(config)
    if config.random_shape:
        return _random_model(config, graft)
    path = Path(config.path) if config.path else tiny_model_dir(config.tiny, config.seed)
    return _load_local(path, config, graft)


def tiny_model_dir(family: str, seed: int = 0) -> Path:
    """The saved built-in tiny model (written once, atomically, then reused)."""
    from toolkit.testing import save_tiny

    target = cache_dir() / f"tiny-{family}-seed{seed}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    save_tiny(staging, family=family, seed=seed)
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def torch_dtype(name: str) -> Any:
    """'auto' (keep the checkpoint's dtype) or a torch dtype."""
    return "auto" if name == "auto" else getattr(torch, name)


def _check_local(path: Path) -> None:
    if not path.is_dir():
        raise ConfigError(
            f"model.path={str(path)!r} is not a directory; set model.path to a local model "
            "directory (with config.json) or an augmented checkpoint"
        )
    if (path / AUGMENT_CONFIG).is_file():
        return
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{path} has no config.json or {AUGMENT_CONFIG}; point model.path at the directory "
            "that save_pretrained wrote"
        )
    _check_architecture(config_file)


def _check_architecture(config_file: Path) -> None:
    from toolkit.graft.families import SUPPORTED

    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_file} is not valid JSON (line {err.lineno})") from None
    types = {config.get("model_type"), (config.get("text_config") or {}).get("model_type")}
    if not types & set(SUPPORTED):
        raise UnsupportedArchitectureError(
            f"{config_file.parent}: model_type {config.get('model_type')!r} is not supported; "
            f"supported: {', '.join(SUPPORTED)}"
        )


def _load_local(path: Path, config: ModelConfig, graft: GraftConfig | None) -> Any:
    from toolkit.graft.augmented import AugmentedModel

    dtype = torch_dtype(config.dtype)
    if (path / AUGMENT_CONFIG).is_file():
        return AugmentedModel.from_pretrained(
            path, device_map=config.device_map, dtype=None if dtype == "auto" else dtype
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=config.device_map)
    tokenizer = AutoTokenizer.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return AugmentedModel.graft(base.eval(), graft or GraftConfig(), tokenizer=tokenizer)


def _random_model(config: ModelConfig, graft: GraftConfig | None) -> Any:
    from toolkit.bench.shapes import random_model
    from toolkit.graft.augmented import AugmentedModel

    dtype = torch.float32 if config.dtype == "auto" else torch_dtype(config.dtype)
    device = config.device_map if config.device_map not in (None, "auto") else "cpu"
    base = random_model(config.random_shape, dtype, device, config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return AugmentedModel.graft(base, graft or GraftConfig())
