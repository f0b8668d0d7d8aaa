"""Where a save may write: a checkpoint directory this toolkit wrote, nothing else.

Saving replaces its target directory as a whole. `check_target` refuses the current directory
(or one holding it), a file, and any non-empty directory that is not a checkpoint this toolkit
wrote or that holds files its checkpoint did not write; it first recovers what an interrupted
save left beside the target. Light on imports (no torch), so the CLI runs it before any model
loads.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.core.errors import CheckpointError
from toolkit.io import atomic, json_reader

CONFIG_FILE = "augment_config.json"
HEAD_FILE = "head.safetensors"
BASE_DIR = "base"
CARD_FILE = "README.md"  # the model card, recorded under "card" (not among the hashed files)
# What a format-1 checkpoint (no file list) may hold besides tokenizer files.
_FORMAT1_ENTRIES = {CONFIG_FILE, HEAD_FILE, BASE_DIR, "training", "custom_generate",
                    "special_tokens_map.json",
                    "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja"}


def _entries_written(directory: Path) -> set[str] | None:
    """Top-level names a toolkit checkpoint in `directory` wrote; None if it is not one."""
    try:
        config = json_reader.load(directory / CONFIG_FILE)
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or "graft" not in config or "format_version" not in config:
        return None
    if isinstance(config.get("files"), dict):
        card = {CARD_FILE} if isinstance(config.get("card"), dict) else set()
        return {CONFIG_FILE} | card | {name.split("/")[0] for name in config["files"]}
    return {name for name in (p.name for p in directory.iterdir())
            if name in _FORMAT1_ENTRIES or name.startswith("tokenizer")}


def is_complete(directory: Path) -> bool:
    """Whether `directory` holds a checkpoint this toolkit finished writing."""
    return directory.is_dir() and _entries_written(directory) is not None


def check_target(directory, key: str = "output_dir") -> Path:
    """The resolved save target, after refusing anything a save must not replace: the current
    directory or one holding it, a file, a non-empty directory that is not a checkpoint this
    toolkit wrote (or that holds files the checkpoint did not write). Recovers what an
    interrupted save left beside it first."""
    target = Path(directory).resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise CheckpointError(
            f"{key}={str(directory)!r} is the current directory or holds it; a save replaces "
            f"{key} as a whole, so give a new or checkpoint directory, e.g. checkpoints/NAME"
        )
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"{key}={str(directory)!r} is a file; choose a directory path")
    atomic.recover(target, is_complete)
    if not target.is_dir() or not any(target.iterdir()):
        return target
    written = _entries_written(target)
    if written is None:
        raise CheckpointError(
            f"{key}={str(directory)!r} is a non-empty directory that is not a checkpoint this "
            f"toolkit wrote; a save would replace it as a whole, so choose a new directory"
        )
    foreign = sorted(p.name for p in target.iterdir() if p.name not in written)
    if foreign:
        raise CheckpointError(
            f"{key}={str(directory)!r} is a checkpoint but also holds {', '.join(foreign[:3])}, "
            "which the checkpoint did not write; move those out or choose another directory"
        )
    return target


def inside(path, directory) -> bool:
    """Whether `path` is `directory` or lies under it, both resolved: links followed and `..`
    taken out first (`a/../b` is not inside `a`). A value that is no path (a NUL byte in it,
    bytes, None) lies nowhere."""
    try:
        path, directory = Path(path).resolve(), Path(directory).resolve()
    except (TypeError, ValueError):
        return False
    return path == directory or directory in path.parents


def refuse_pickles(path: Path) -> None:
    """A model folder whose weights are only pickles (pytorch_model*.bin) is refused: loading a
    pickle can run code, so only safetensors weights are read."""
    if any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in path.glob("pytorch_model*.bin"))
    if pickles:
        raise CheckpointError(
            f"{path} holds its weights only as a pickle ({pickles[0]}), which can run code when "
            "loaded, so this toolkit reads safetensors only; convert the model where you trust "
            "it (save_pretrained(DIR, safe_serialization=True)) and use DIR"
        )
