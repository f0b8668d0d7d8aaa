"""Checkpoint files of an AugmentedModel: write atomically, read back with clear errors.

Layout of a checkpoint directory:
- `head.safetensors`: the head's weights only, metadata: toolkit version.
- `augment_config.json`: format version, graft config (the head's size, temperature grid and
  level live only here), default decoding config, `prompt_format` (the prompt convention the
  head was trained with: "chat" or "raw"; absent when not known), the base reference
  (`toolkit.sources.references`: "preset:NAME", "hub:ORG/NAME", "path:RELATIVE" or "self"), a
  fingerprint of the base's config and a sample of its weights, the sha256 of every other file of the checkpoint, toolkit version. It is written
  last and checked on load (see `toolkit.graft.integrity`).
- `config.json`: not a model config; its `model_type` tells `AutoModelForCausalLM.from_pretrained`
  to use `AugmentedModel.from_pretrained` (`toolkit.graft.pointer`).
- tokenizer files, when the model has a tokenizer.
- `README.md`: the model card (`toolkit.graft.model_card`), outside the integrity check; a
  card a person wrote or edited is carried into the next save unchanged.
- `base/`: the base model in safetensors shards, only when saved with `self_contained=True`.
- `custom_generate/`: SLED / DoLa / top-n-sigma for plain transformers models
  (`generate(custom_generate=DIR, trust_remote_code=True)`, see `toolkit.graft.custom_generate`).

Saving replaces the target directory as a whole, so it refuses any directory that is not empty
and not a checkpoint this toolkit wrote, and the current directory or one that holds it
(`toolkit.io.layout.check_target`). The swap itself is atomic (`toolkit.io.atomic`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from toolkit import __version__
from toolkit.core.errors import CheckpointError
from toolkit.graft import custom_generate, integrity, model_card, pointer
from toolkit.io import atomic, json_reader
from toolkit.io.files import public_tree, target_named
from toolkit.io.layout import (
    BASE_DIR,
    CONFIG_FILE,
    HEAD_FILE,
    check_target,
    is_complete,
)
from toolkit.methods.options import DecodingConfig, GraftConfig
from toolkit.sources.base import has_tokenizer
from toolkit.sources.references import SELF, on_hub, read_reference, write_reference

pointer.register()
FORMAT_VERSION = integrity.FORMAT_VERSION
__all__ = ["BASE_DIR", "CONFIG_FILE", "HEAD_FILE", "check_target", "is_complete"]

# Config keys that define the architecture (shapes and logit scale) of a base model.
FINGERPRINT_KEYS = (
    "model_type", "hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads",
    "num_key_value_heads", "intermediate_size", "head_dim", "tie_word_embeddings",
    "final_logit_softcapping", "num_local_experts", "num_experts_per_tok",
    "logit_scale", "logits_scaling", "lm_head_multiplier",
)


def fingerprint(config) -> dict[str, Any]:
    """{'sha256': digest of a canonical JSON of the architecture keys, 'keys': those keys}."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    keys = {k: v for k in FINGERPRINT_KEYS if (v := _config_value(text, k)) is not None}
    canonical = json.dumps(keys, sort_keys=True, separators=(",", ":"))
    return {"sha256": hashlib.sha256(canonical.encode()).hexdigest(), "keys": keys}


def _config_value(config, key: str) -> Any:
    """`config.key`, None when absent or not one value (Gemma 4's per-layer head_dim raises)."""
    try:
        return getattr(config, key, None)
    except Exception:  # noqa: BLE001 - transformers raises its own error types here
        return None


@dataclass
class Checkpoint:
    """A checkpoint's parsed files; `head_state` is checked against the head by `load_head`."""

    directory: Path
    config: dict[str, Any]
    head_state: dict[str, torch.Tensor]
    graft: GraftConfig
    decoding: DecodingConfig

    @property
    def base_path(self) -> str:
        return read_reference(self.config["base"], self.directory)

    @property
    def base_on_hub(self) -> bool:
        """The base is a Hub id (`hub:ID`), read from the Hub only."""
        return on_hub(self.config["base"])

    @property
    def has_tokenizer(self) -> bool:
        return has_tokenizer(self.directory)

    @property
    def prompt_format(self) -> str | None:
        """"chat" or "raw": how the head's training prompts were written (None: not recorded,
        as in checkpoints of untrained heads and of older toolkits)."""
        return self.config.get("prompt_format")


def save(directory, *, base, base_reference: str, head, tokenizer, graft_config, decoding,
         self_contained: bool, prompt_format: str | None = None) -> Path:
    """Write a checkpoint into `directory` via a partial dir beside it, swapped in at the end."""
    target = check_target(directory, key="directory")
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
        "base": write_reference(reference, target),
        "base_fingerprint": fingerprint(base.config),
        "weight_fingerprint": integrity.weight_sample(base),
    }
    if prompt_format is not None:
        config["prompt_format"] = prompt_format
    card = model_card.carried(target)
    with target_named(target), atomic.atomic_dir(target) as tmp:
        _write_head(tmp / HEAD_FILE, head)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        custom_generate.write_folder(tmp, graft_config, decoding)
        (tmp / "config.json").write_text(json.dumps(pointer.POINTER, indent=2) + "\n")
        if self_contained:
            base.save_pretrained(tmp / BASE_DIR, safe_serialization=True)
        config["files"] = integrity.file_hashes(tmp, skip=CONFIG_FILE)
        config["card"] = model_card.write(tmp, config["base"], graft_config, decoding,
                                          prompt_format, kept=card)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        public_tree(tmp)
    return target


def _write_head(path: Path, head) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
    metadata = {"format": "pt", "toolkit_version": __version__}
    save_file(tensors, str(path), metadata=metadata)


def read_config(directory) -> tuple[Path, dict[str, Any], GraftConfig, DecodingConfig]:
    """(resolved dir, raw augment_config.json, its graft and decoding sections), validated."""
    path = Path(directory).resolve()
    # Put back what an interrupted save left and drop partial dirs of dead processes (in a
    # read-only location, load what is there).
    with contextlib.suppress(OSError):
        atomic.recover(path, is_complete)
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
        config = json_reader.load(config_path)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"{config_path} is not valid JSON ({err}); the checkpoint is corrupted, save it again"
        ) from err
    graft, decoding = integrity.parse_config(config, config_path)
    return path, config, graft, decoding


def read(directory) -> Checkpoint:
    """Parse and verify a checkpoint directory; anything missing, unreadable, changed since it
    was saved or written by a newer toolkit raises CheckpointError."""
    path, config, graft, decoding = read_config(directory)
    integrity.check_files(path, config.get("files", {}))
    return Checkpoint(path, config, _read_head(path / HEAD_FILE, graft), graft, decoding)


def _read_head(path: Path, graft: GraftConfig) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing; the checkpoint is incomplete, save it again"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118
            integrity.check_head_shapes(path, shapes, graft)
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} cannot be read as safetensors ({err}); the file is truncated or corrupted, "
            "save the checkpoint again"
        ) from err


def check_fingerprint(checkpoint: Checkpoint, base, where: str) -> None:
    """Raise CheckpointError when the base's architecture or weights differ from the grafted."""
    saved = checkpoint.config["base_fingerprint"]
    found = fingerprint(base.config)
    if saved["sha256"] == found["sha256"]:
        integrity.check_weights(checkpoint.config.get("weight_fingerprint") or {}, base,
                                checkpoint.directory, where)
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
    state = dict(checkpoint.head_state)
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
