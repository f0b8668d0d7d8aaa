"""How a checkpoint names its base model, and where a loaded base model came from.

A checkpoint's `augment_config.json` holds its base as one string (`write_reference`):
"preset:NAME" for a model preset, "hub:ORG/NAME" for a Hub id, "path:RELATIVE" for a directory,
relative to the checkpoint so the two can move together, or "self" (the base is saved inside,
under `base/`). `read_reference` turns it back into a directory or a Hub id; checkpoints of
formats 1-2 hold an absolute path or a Hub id, which read as themselves.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from toolkit.core.errors import CheckpointError
from toolkit.io.layout import BASE_DIR, CONFIG_FILE
from toolkit.sources import hub
from toolkit.sources.presets import cache_dir, prepare_preset, preset_at

SELF = "self"
PRESET, HUB, PATH = "preset:", "hub:", "path:"


def model_source(model) -> str:
    """Where a loaded base model can be loaded from again: its absolute local path, else its
    Hub id (its `name_or_path`; empty when it was not loaded from either)."""
    name = getattr(model, "name_or_path", "") or ""
    if name and Path(name).is_dir():
        return str(Path(name).resolve())
    return name


def absolute_source(source: str) -> str:
    """The absolute path of a local directory; anything else (a Hub id) as given."""
    return str(Path(source).resolve()) if Path(source).is_dir() else source


def write_reference(source: str, checkpoint_dir: Path) -> str:
    """How a checkpoint in `checkpoint_dir` refers to the base at `source` (module docstring);
    `source` "self" is a base saved inside the checkpoint."""
    if source == SELF:
        return SELF
    if hub.is_hub_id(source):
        return HUB + source
    name = preset_at(source)
    return PRESET + name if name else PATH + os.path.relpath(Path(source).resolve(),
                                                             checkpoint_dir)


def on_hub(reference) -> bool:
    """Whether a checkpoint's base reference names a Hub id (`hub:ID`): read from the Hub
    only, never from a local folder of that name."""
    return isinstance(reference, str) and reference.startswith(HUB)


def read_reference(reference: str, checkpoint_dir: Path, prepare: bool = True) -> str:
    """Where the base of the checkpoint in `checkpoint_dir` is: a directory or a Hub id. A
    preset is prepared into the cache when missing (`prepare`), else its cache path is given.
    CheckpointError for a reference that is no path (a NUL byte) or a `hub:` value that is no
    Hub id (a path there would be read against the working directory)."""
    if not isinstance(reference, str) or "\0" in reference or (
            on_hub(reference) and not hub.is_hub_name(reference.removeprefix(HUB))):
        raise CheckpointError(
            f"{Path(checkpoint_dir) / CONFIG_FILE} names its base {str(reference)[:80]!r}, "
            "which is no model reference (hub: takes a Hub id such as org/name); the "
            "checkpoint was changed after saving: save it again"
        )
    if reference == SELF:
        return str(checkpoint_dir / BASE_DIR)
    if reference.startswith(PRESET):
        name = reference.removeprefix(PRESET)
        say = functools.partial(print, file=sys.stderr)  # stdout carries the replies
        return str(prepare_preset(name, say=say) if prepare else cache_dir() / name)
    if reference.startswith(HUB):
        return reference.removeprefix(HUB)
    if reference.startswith(PATH):
        return str((checkpoint_dir / reference.removeprefix(PATH)).resolve())
    return reference  # formats 1-2: an absolute path or a Hub id
