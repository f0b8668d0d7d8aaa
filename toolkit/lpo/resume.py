"""A Lightning checkpoint to resume from (`trainer.ckpt_path`), read without running its code.

`torch.load(weights_only=True)` refuses any pickled object other than tensors and plain
containers, so a crafted checkpoint cannot run code. A checkpoint also names files: the
ModelCheckpoint state holds the best, k-th best and last checkpoint paths and its folder.
Lightning reloads the best path whatever the folder, and deletes the k-th best and the old last
file when it saves a better one, so every path named must lie inside this run's checkpoint
folder when the run keeps checkpoints; anything else is refused before training starts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from toolkit.core.errors import DataError, reason
from toolkit.io.layout import inside

log = logging.getLogger(__name__)
PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path", "dirpath")


def load(path, key: str = "trainer.ckpt_path") -> dict[str, Any]:
    """The checkpoint's contents (tensors and plain values only); DataError for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, ...: all mean "not ours"
        why = ("a pickled object that is not a tensor or a plain value"
               if type(err).__name__ == "UnpicklingError" else reason(err))
        raise DataError(
            f"{key}={str(path)!r} holds objects a safe load refuses ({type(err).__name__}: "
            f"{why}); only plain tensors are read: point it at a last.ckpt that training "
            "wrote, or unset it to start afresh"
        ) from None
    if not isinstance(state, dict):
        raise DataError(f"{key}={str(path)!r} is not a Lightning checkpoint (not a mapping); "
                        "point it at a last.ckpt that training wrote")
    return state


def named_paths(state: dict[str, Any]) -> list[tuple[str, Any]]:
    """(key, value) for every file or folder a checkpoint's callback states name, whatever
    the value's type (Lightning would use a bytes value as a path too)."""
    named: list[tuple[str, Any]] = []
    callbacks = state.get("callbacks")
    for saved in (callbacks.values() if isinstance(callbacks, dict) else ()):
        if not isinstance(saved, dict):
            continue
        named += [(k, saved[k]) for k in PATH_KEYS if saved.get(k) not in (None, "")]
        best_k = saved.get("best_k_models")
        named += [("best_k_models", p) for p in (best_k if isinstance(best_k, dict) else ())]
        if best_k is not None and not isinstance(best_k, dict):
            named.append(("best_k_models", best_k))
    return named


def resolve(ckpt_path, checkpoint_dir) -> str | None:
    """`trainer.ckpt_path` as a file: "last" is `checkpoint_dir`'s last.ckpt, or None (a fresh
    start, said in one line) before training has written one."""
    if ckpt_path != "last":
        return ckpt_path
    last = Path(checkpoint_dir) / "last.ckpt"
    if last.is_file():
        return str(last)
    log.warning("trainer.ckpt_path=last: no %s yet; training starts from the beginning", last)
    return None


def check(path, dirpath, key: str = "trainer.ckpt_path") -> None:
    """Refuse a resume checkpoint that cannot be read safely or names a path outside
    `dirpath`, this run's checkpoint folder (None: the run has no ModelCheckpoint, so Lightning
    restores no callback state and the paths are never used)."""
    state = load(path, key)
    if dirpath is None:
        return
    for name, value in named_paths(state):
        if not isinstance(value, str) or "\0" in value:
            raise DataError(
                f"{key}={str(path)!r} names {name}={_short(value)}, which is not a path (a "
                f"string without NUL bytes); point it at a last.ckpt that training wrote, or "
                "unset trainer.ckpt_path"
            )
        if not inside(value, dirpath):
            raise DataError(
                f"{key}={str(path)!r} names {name}={value!r}, outside this run's checkpoint "
                f"folder {Path(dirpath).resolve()}; Lightning would read or delete that file: "
                "resume with the trainer.checkpoint_dir the checkpoint was written in, or unset "
                "trainer.ckpt_path"
            )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
