"""Checkpoint files of an AugmentedModel: write atomically, read back with clear errors.

Layout of a checkpoint directory:
- `head.safetensors`: the grafted tensors only (the head), metadata: toolkit version, head config.
- `augment_config.json`: graft config, default decoding config, base reference (an absolute
  path, a Hub id, or "self"), a fingerprint of the base's config, toolkit version.
- tokenizer files, when the model has a tokenizer.
- `base/`: the base model in safetensors shards, only when saved with `self_contained=True`.
- `custom_generate/`: SLED / DoLa / top-n-sigma for plain transformers models
  (`generate(custom_generate=DIR, trust_remote_code=True)`, see `toolkit.graft.custom_generate`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from toolkit import __version__
from toolkit.errors import CheckpointError
from toolkit.graft import custom_generate

CONFIG_FILE = "augment_config.json"
HEAD_FILE = "head.safetensors"
BASE_DIR = "base"
SELF = "self"
FORMAT_VERSION = 1

# Config keys that define the architecture (shapes and logit scale) of a base model.
FINGERPRINT_KEYS = (
    "model_type", "hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads",
    "num_key_value_heads", "intermediate_size", "head_dim", "tie_word_embeddings",
    "final_logit_softcapping", "num_local_experts", "num_experts_per_tok",
)


def fingerprint(config) -> dict[str, Any]:
    """{'sha256': digest of a canonical JSON of the architecture keys, 'keys': those keys}."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    keys = {k: getattr(text, k) for k in FINGERPRINT_KEYS if getattr(text, k, None) is not None}
    canonical = json.dumps(keys, sort_keys=True, separators=(",", ":"))
    return {"sha256": hashlib.sha256(canonical.encode()).hexdigest(), "keys": keys}


def base_reference(model) -> str:
    """Where a base model can be loaded from: its absolute local path, else its Hub id."""
    name = getattr(model, "name_or_path", "") or ""
    if name and Path(name).is_dir():
        return str(Path(name).resolve())
    return name


@dataclass
class Checkpoint:
    """A checkpoint's parsed files; `head_state` is checked against the head by `load_head`."""

    directory: Path
    config: dict[str, Any]
    head_state: dict[str, torch.Tensor]

    @property
    def base_path(self) -> str:
        reference = self.config["base"]
        return str(self.directory / BASE_DIR) if reference == SELF else reference

    @property
    def has_tokenizer(self) -> bool:
        return has_tokenizer(self.directory)


def has_tokenizer(directory) -> bool:
    """Whether tokenizer files were saved in `directory`."""
    return any(Path(directory, f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def save(directory, *, base, base_reference: str, head, tokenizer, graft_config, decoding,
         self_contained: bool) -> Path:
    """Write a checkpoint into `directory` via a temp dir beside it, renamed at the end."""
    target = Path(directory).resolve()
    reference = SELF if self_contained else base_reference
    if not reference:
        raise CheckpointError(
            f"cannot save to {target}: the base model was not loaded from a path, so a head-only "
            "checkpoint could not find it again; save with self_contained=True"
        )
    if not self_contained and (target == Path(reference) or target in Path(reference).parents):
        raise CheckpointError(
            f"cannot save to {target}: that directory holds the base model this checkpoint "
            "refers to; choose another directory"
        )
    config = {
        "format_version": FORMAT_VERSION,
        "toolkit_version": __version__,
        "graft": dataclasses.asdict(graft_config),
        "decoding": dataclasses.asdict(decoding),
        "base": reference,
        "base_fingerprint": fingerprint(base.config),
    }
    with _atomic_dir(target) as tmp:
        _write_head(tmp / HEAD_FILE, head, graft_config.head)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        custom_generate.write_folder(tmp)
        if self_contained:
            base.save_pretrained(tmp / BASE_DIR, safe_serialization=True)
    return target


def _write_head(path: Path, head, head_config) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
    metadata = {
        "format": "pt",
        "toolkit_version": __version__,
        "head_config": json.dumps(dataclasses.asdict(head_config), sort_keys=True),
    }
    save_file(tensors, str(path), metadata=metadata)


@contextmanager
def _atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temp dir beside `target`; on success it replaces `target`, else vanishes."""
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"cannot save to {target}: it is a file; choose a directory path")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read(directory) -> Checkpoint:
    """Parse a checkpoint directory; missing or unreadable files raise CheckpointError."""
    path = Path(directory).resolve()
    if not path.is_dir():
        raise CheckpointError(
            f"no checkpoint at {path}: the directory does not exist; check the path or save one "
            "with AugmentedModel.save_pretrained"
        )
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"{path} is not an AugmentedModel checkpoint: {CONFIG_FILE} is missing; point at a "
            "directory written by AugmentedModel.save_pretrained"
        )
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"{config_path} is not valid JSON ({err}); the checkpoint is corrupted, save it again"
        ) from err
    missing = [k for k in ("graft", "decoding", "base", "base_fingerprint") if k not in config]
    if missing:
        raise CheckpointError(
            f"{config_path} lacks {', '.join(missing)}; the checkpoint is corrupted, save it again"
        )
    return Checkpoint(path, config, _read_head(path / HEAD_FILE))


def _read_head(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing; the checkpoint is incomplete, save it again"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} cannot be read as safetensors ({err}); the file is truncated or corrupted, "
            "save the checkpoint again"
        ) from err


def check_fingerprint(checkpoint: Checkpoint, base_config, where: str) -> None:
    """Raise CheckpointError when the base's architecture differs from the grafted one."""
    saved = checkpoint.config["base_fingerprint"]
    found = fingerprint(base_config)
    if saved["sha256"] == found["sha256"]:
        return
    diff = {k: (saved["keys"].get(k), found["keys"].get(k))
            for k in sorted(set(saved["keys"]) | set(found["keys"]))
            if saved["keys"].get(k) != found["keys"].get(k)}
    details = ", ".join(f"{k}: grafted {a!r} vs found {b!r}" for k, (a, b) in diff.items())
    raise CheckpointError(
        f"fingerprint mismatch: the head in {checkpoint.directory} was grafted on another base "
        f"model than the one at {where} ({details}); load it with the base it was grafted on"
    )


def load_head(head, checkpoint: Checkpoint) -> None:
    """Copy the saved tensors into `head` after a strict key and shape check."""
    expected = head.state_dict()
    state = checkpoint.head_state
    path = checkpoint.directory / HEAD_FILE
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the head config in {CONFIG_FILE}: missing keys {missing}, "
            f"unexpected keys {unexpected}; save the checkpoint again"
        )
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise CheckpointError(
            f"{path} has tensors of the wrong shape ({'; '.join(wrong)}); the head config in "
            f"{CONFIG_FILE} does not match the weights, save the checkpoint again"
        )
    head.load_state_dict(state, strict=True)


def reference_of(source: str) -> str:
    """The absolute path of a local directory; anything else (a Hub id) as given."""
    return str(Path(source).resolve()) if Path(source).is_dir() else source


def _is_local(source: str) -> bool:
    path = Path(source)
    return path.exists() or path.is_absolute() or source.startswith(".") or source.count("/") > 1


def load_base(source, device_map=None, dtype=None, owner: Path | None = None):
    """Load a base model, and its tokenizer if one is saved beside it, from a directory (or,
    for a reference that is not a local path, a Hub id)."""
    source = str(source)
    if _is_local(source) and not Path(source).is_dir():
        prefix = f"checkpoint {owner} refers to a base model at {source}, but " if owner else ""
        raise CheckpointError(
            f"{prefix}no model directory exists at {Path(source).resolve()}; check the path, pass "
            "base=... to from_pretrained, or save with self_contained=True so the checkpoint "
            "carries its base"
        )
    kwargs = {"device_map": device_map} if device_map is not None else {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise CheckpointError(
            f"cannot load the base model from {source} ({err}); its files are missing or "
            "corrupted: restore them, or save the checkpoint again"
        ) from err
    tokenizer = AutoTokenizer.from_pretrained(source) if has_tokenizer(source) else None
    return model.eval(), tokenizer
