"""The recipe's `trainer` section beyond its typed fields: every other Lightning Trainer
argument, callbacks from the recipe, and `ckpt_path: last`.

- Any `lightning.pytorch.Trainer` argument that is not a typed field (`num_nodes`,
  `check_val_every_n_epoch`, `val_check_interval`, ...) may be written flat under `trainer:`
  (as LightningCLI takes it); `sort_section` moves it to `trainer.lightning`, which reaches the
  Trainer as given. The arguments the toolkit sets from its own fields or needs as they are
  (`RESERVED`) are refused, naming the key to use instead.
- One vocabulary: the section uses Lightning's and `torch.optim`'s names; TRL's names for the
  same settings (`learning_rate`, `max_grad_norm`, ...) are refused naming ours.
- `trainer.callbacks`: Lightning callbacks, each `{class_path, init_args}` as LightningCLI
  writes them (or the class path alone).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from functools import cache
from typing import Any

from toolkit.core.errors import ConfigError

# Trainer arguments the toolkit sets itself, and why.
RESERVED = {
    "callbacks": "give them as trainer.callbacks (a list of {class_path, init_args})",
    "logger": "choose them with trainer.logger",
    "enable_progress_bar": "switch it with trainer.progress_bar",
    "plugins": "checkpoints are written through the toolkit's own plugin",
    "enable_checkpointing": "set trainer.checkpoint_dir to keep checkpoints",
    "use_distributed_sampler": "the data module shards the pairs itself",
    "default_root_dir": "logs go under the recipe's work_dir",
    "gradient_clip_algorithm": "the gradient is clipped by its norm (trainer.gradient_clip_val)",
}
# TRL's (transformers.TrainingArguments') names -> this section's.
TRL_NAMES = {
    "learning_rate": "lr", "max_grad_norm": "gradient_clip_val",
    "per_device_train_batch_size": "batch_size", "num_train_epochs": "max_epochs",
    "gradient_accumulation_steps": "accumulate_grad_batches",
    "lr_scheduler_type": "lr_scheduler", "logging_steps": "log_every_n_steps",
    "output_dir": "checkpoint_dir", "resume_from_checkpoint": "ckpt_path",
}


@cache
def lightning_arguments() -> tuple[str, ...]:
    """The keyword arguments of `lightning.pytorch.Trainer` (this Lightning's)."""
    from lightning.pytorch import Trainer

    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in inspect.signature(Trainer.__init__).parameters.values()
                 if p.name != "self" and p.kind in kinds)


def sort_section(section: dict, fields: set[str]) -> dict:
    """The raw `trainer` mapping with each flat Lightning argument that is not a typed field
    moved under `lightning`; TRL's names and near misses of a Lightning argument refused in one
    line (other unknown keys are left to the schema's check)."""
    extra = dict(section.get("lightning") or {})
    for key in [k for k in section if k not in fields]:
        if key in TRL_NAMES:
            raise ConfigError(f"trainer.{key} is TRL's name; this section uses Lightning's and "
                              f"torch.optim's: trainer.{TRL_NAMES[key]}")
        if key in lightning_arguments():
            extra[key] = section.pop(key)
        elif not difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6):
            near = difflib.get_close_matches(str(key), _open(fields), n=1, cutoff=0.8)
            if near:
                raise ConfigError(f"unknown key 'trainer.{key}'; did you mean "
                                  f"'trainer.{near[0]}' (a Lightning Trainer argument)?")
    if extra:  # checked with the rest of the section (`TrainerConfig`)
        section["lightning"] = extra
    return section


def _open(fields: set[str]) -> list[str]:
    """The Trainer arguments `trainer.lightning` takes: not reserved, not a typed field."""
    return [a for a in lightning_arguments() if a not in RESERVED and a not in fields]


def check_lightning(extra: dict, fields: set[str]) -> None:
    """Refuse a `trainer.lightning` key that is reserved, a typed field of the section, or not
    a Trainer argument."""
    for key in extra:
        if key in RESERVED:
            raise ConfigError(f"trainer.{key} is set by the toolkit: {RESERVED[key]}")
        if key in fields:
            raise ConfigError(f"trainer.lightning.{key} is a field of its own; set "
                              f"trainer.{key}")
        if key not in lightning_arguments():
            near = difflib.get_close_matches(str(key), _open(fields), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"trainer.lightning.{key} is not a Lightning Trainer "
                              f"argument{hint}; valid: {', '.join(_open(fields))}")


def make_callbacks(specs: list) -> list:
    """Lightning callbacks from `trainer.callbacks` entries: a class path, or
    `{class_path: ..., init_args: {...}}`."""
    if not specs:  # no Lightning import on every recipe load
        return []
    from lightning.pytorch.callbacks import Callback

    made = []
    for i, spec in enumerate(specs):
        where = f"trainer.callbacks[{i}]"
        path, args = (spec, {}) if isinstance(spec, str) else _parts(spec, where)
        cls = _import(path, where)
        if not (isinstance(cls, type) and issubclass(cls, Callback)):
            raise ConfigError(f"{where}: {path} is not a Lightning Callback class")
        try:
            made.append(cls(**args))
        except Exception as err:  # the user's arguments: one line naming the callback
            raise ConfigError(f"{where}: {path}({args}) failed ({type(err).__name__}: {err}); "
                              "fix its init_args") from None
    return made


def _parts(spec: Any, where: str) -> tuple[str, dict]:
    if not isinstance(spec, dict) or set(spec) - {"class_path", "init_args"} \
            or not isinstance(spec.get("class_path"), str) \
            or not isinstance(spec.get("init_args", {}), dict):
        raise ConfigError(f"{where} must be a class path or {{class_path: ..., init_args: "
                          f"{{...}}}}, e.g. {{class_path: lightning.pytorch.callbacks."
                          f"EarlyStopping, init_args: {{monitor: eval_loss}}}}")
    return spec["class_path"], dict(spec.get("init_args") or {})


def _import(path: str, where: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{where}: cannot import {path!r} ({type(err).__name__}: {err}); "
                          "give a module.Class path that is installed") from None
