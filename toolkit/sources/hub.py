"""Hugging Face Hub ids as model sources: `model.path`, `AugmentedModel.graft/from_pretrained`
and a checkpoint's base reference may name a Hub id (`gpt2`, `org/name`, `org/name@revision`)
instead of a local directory.

A value written like a path is never sent to the Hub: an absolute path, one starting with `.`
or `~`, one with a backslash or more than one `/`, `DIR/name` where DIR exists here, and
`checkpoints/...` or `runs/...` (the toolkit's own folders). Anything else that does not exist
locally and that `huggingface_hub.utils.validate_repo_id` accepts is a Hub id.

The files come through `huggingface_hub.snapshot_download` (config, tokenizer, safetensors
weights, our checkpoint files) into its cache; later runs reuse it, offline too with
`HF_HUB_OFFLINE=1`. Whether to stay offline is decided here, by `offline()`, for every use of
the Hub (also `toolkit.sources.presets`): huggingface_hub's own reading of the variable. With no
network and nothing cached, one line says what to do.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.core.errors import CheckpointError, reason

# What a causal LM or an AugmentedModel checkpoint needs (no .bin/.pt/.gguf duplicates).
PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja",
            "custom_generate/*"]
# Folders the toolkit writes into: `checkpoints/x` names a checkpoint, never a Hub repo.
OWN_FOLDERS = ("checkpoints", "runs")


def _written_as_path(text: str) -> bool:
    """Whether `text` has the form of a local path, whatever exists here."""
    parts = text.split("/")
    return (Path(text).is_absolute() or text.startswith((".", "~")) or "\\" in text
            or "\0" in text or len(parts) > 2 or parts[0] in OWN_FOLDERS)


def looks_like_path(source) -> bool:
    """Whether `source` is written as a local path (whether or not it exists)."""
    text = str(source)
    parts = text.split("/")
    return _written_as_path(text) or Path(text).exists() or (
        len(parts) == 2 and Path(parts[0]).is_dir())


def split_id(source) -> tuple[str, str | None]:
    """(repo id, revision or None) of `org/name@revision`."""
    repo, _, revision = str(source).partition("@")
    return repo, revision or None


def is_hub_id(source) -> bool:
    """A Hub id (`name`, `org/name`, optionally `@revision`) not written like a local path."""
    return not looks_like_path(source) and is_hub_name(source)


def is_hub_name(source) -> bool:
    """Whether `source` has the form of a Hub id, whatever exists here (a checkpoint's `hub:`
    base is never a local folder)."""
    if _written_as_path(str(source)):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo, revision = split_id(source)
    try:
        validate_repo_id(repo)
    except HFValidationError:
        return False
    return "@" not in str(source) or bool(revision and revision.strip() == revision)


def offline() -> bool:
    """Whether the Hub must not be contacted: `HF_HUB_OFFLINE` as huggingface_hub reads it
    (`huggingface_hub.constants.HF_HUB_OFFLINE`, set when huggingface_hub is imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def local_dir(source, from_hub: bool = False) -> Path:
    """A local directory for `source`: the path itself, or the Hub snapshot of a Hub id
    (`from_hub`: `source` is a Hub id even where a local folder of that name exists)."""
    if not (from_hub or is_hub_id(source)):
        return Path(source)
    import huggingface_hub

    repo, revision = split_id(source)
    try:
        return Path(huggingface_hub.snapshot_download(
            repo_id=repo, revision=revision, allow_patterns=PATTERNS,
            local_files_only=offline()))
    except Exception as err:  # network, auth, missing repo, empty cache: all end the same way
        option = f" --revision {revision}" if revision else ""
        raise CheckpointError(
            f"no local directory {str(source)!r} exists, and the Hugging Face Hub gave no model "
            f"of that id ({reason(err)}); give a local model directory, or download it where "
            f"there is network (hf download {repo}{option}) and run with HF_HUB_OFFLINE=1"
        ) from None
