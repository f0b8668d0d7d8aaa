"""A base model from a local directory or a Hub id: the one loader (`load_base`), the dtype it
loads in (`resolve_dtype`), and the checks on its files that run before any weights are read
(`check_weight_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM

from toolkit.core.errors import CheckpointError, reason
from toolkit.io import json_reader
from toolkit.io.layout import CONFIG_FILE, refuse_pickles
from toolkit.sources import hub
from toolkit.sources.quiet import quiet_loading
from toolkit.sources.references import on_hub, read_reference
from toolkit.sources.tokenizer_files import TOKENIZER_CONFIG, load_tokenizer

WEIGHT_PATTERNS = ("model*.safetensors", "*.safetensors.index.json", "*.gguf")
DTYPES = ("float32", "float16", "bfloat16")


def has_tokenizer(directory) -> bool:
    """Whether tokenizer files were saved in `directory`."""
    return any(Path(directory, f).is_file() for f in ("tokenizer.json", TOKENIZER_CONFIG))


def load_base(source, device_map=None, dtype=None, owner: Path | None = None,
              from_hub: bool = False):
    """Load a base model, and its tokenizer if one is saved beside it, from a directory or a
    Hub id (`org/name`, fetched through huggingface_hub; see `toolkit.sources.hub`).

    `owner`: the checkpoint that refers to `source`, named when the directory is missing.
    `from_hub`: `source` is a Hub id (a checkpoint's `hub:` base), even where a local folder of
    that name exists.
    """
    source = str(source)
    hub_id = source if from_hub or hub.is_hub_id(source) else None
    if hub_id:
        source = str(hub.local_dir(hub_id, from_hub=True))
    if not hub_id and not Path(source).is_dir():
        prefix = f"checkpoint {owner} refers to a base model at {source}, but " if owner else ""
        raise CheckpointError(
            f"{prefix}no model directory exists at {Path(source).resolve()}; check the path, pass "
            "base=... to from_pretrained, or save with self_contained=True so the checkpoint "
            "carries its base"
        )
    refuse_pickles(Path(source))
    kwargs = {"use_safetensors": True}  # never a pickle (pytorch_model.bin) file
    if device_map is not None:
        kwargs["device_map"] = device_map
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise CheckpointError(
            f"cannot load the base model from {source} ({reason(err)}); its files are missing or "
            "corrupted: restore them, or save the checkpoint again"
        ) from err
    tokenizer = load_tokenizer(source) if has_tokenizer(source) else None
    if hub_id:  # as from_pretrained(hub_id) names it, so checkpoints refer to the Hub id
        model.name_or_path = model.config._name_or_path = hub_id
    return model.eval(), tokenizer


def resolve_dtype(dtype: str, device_map: str | None, saved: str | None) -> tuple[Any, str]:
    """(torch dtype, a line saying why) for the `model.dtype` setting `dtype` on `device_map`,
    `saved` being the dtype the model was saved in. 'auto' is float32 on CPU, where half
    precision is slow and moves scores, and the saved dtype on a GPU."""
    if dtype != "auto":
        return getattr(torch, dtype), f"model dtype: {dtype} (model.dtype)"
    on_gpu = _runs_on_gpu(device_map)
    saved = saved if saved in DTYPES else None
    if on_gpu and saved:
        return getattr(torch, saved), f"model dtype: {saved} (model.dtype=auto: the checkpoint's dtype on GPU)"
    if on_gpu:
        return torch.float32, "model dtype: float32 (model.dtype=auto; the checkpoint names no dtype)"
    note = f"; the checkpoint is {saved}" if saved and saved != "float32" else ""
    return torch.float32, f"model dtype: float32 (model.dtype=auto on CPU{note})"


def _runs_on_gpu(device_map: str | None) -> bool:
    if device_map in (None, "cpu"):
        return False
    if device_map in ("auto", "balanced", "sequential"):
        return torch.cuda.is_available()
    return not str(device_map).startswith(("cpu", "mps"))


def saved_dtype(path: Path) -> str | None:
    """The saved dtype of a base model directory, or of an augmented checkpoint's base."""
    config_file = path / "config.json"
    if (path / CONFIG_FILE).is_file():
        try:
            reference = json_reader.load(path / CONFIG_FILE).get("base")
        except (OSError, ValueError, AttributeError):
            return None
        if on_hub(reference):
            return None  # known once the Hub snapshot is there
        try:
            base = Path(read_reference(reference, path.resolve(), prepare=False))
        except CheckpointError:
            return None  # the checkpoint's own check names it
        config_file = base / "config.json"
    try:
        config = json_reader.load(config_file)
    except (OSError, ValueError):
        return None
    return config.get("dtype") or config.get("torch_dtype")


def check_weight_files(path: Path) -> None:
    """The weights beside config.json exist, and every safetensors file is whole: its header
    parses and the file is as long as the header says (a truncated copy fails here)."""
    shards = sorted(path.glob("*.safetensors"))
    refuse_pickles(path)
    if not shards and not any(any(path.glob(p)) for p in WEIGHT_PATTERNS):
        raise CheckpointError(
            f"{path} has config.json but no weights (*.safetensors); "
            "copy the weight files too, or point model.path at the complete model directory"
        )
    for shard in shards:
        problem = safetensors_problem(shard)
        if problem:
            raise CheckpointError(
                f"{shard} is not a complete safetensors file ({problem}); the copy is truncated "
                "or corrupted: copy it again"
            )


def safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a whole safetensors file (its header does not parse, or the file is
    shorter than the header says), or None."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if length <= 0 or 8 + length > size:
                return "its header is cut off"
            header = json_reader.loads(fh.read(length))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return f"its header does not parse: {err}"
    if not isinstance(header, dict):
        return f"its header is a JSON {type(header).__name__}, not an object"
    ends = []
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
                and offsets[0] <= offsets[1]):
            return f"tensor {name!r} has data_offsets {offsets!r}, not [start, end]"
        ends.append(offsets[1])
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return f"{size} bytes, the header describes {expected}"
    return None
