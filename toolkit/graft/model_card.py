"""The model card (`README.md`) a checkpoint is saved with, as PEFT writes one for an adapter.

Its YAML front matter is what the Hub reads: `library_name`, `pipeline_tag`, `tags` (the
saved decoding methods) and `base_model` when the base is a Hub id or a model preset (a local
base has no name others can use). The body says what the checkpoint holds and how to load it.
The card is written after the file hashes, so it is not part of the integrity check: editing
it (on the Hub, or by hand) leaves the checkpoint loadable. `augment_config.json` records it
under "card" (its sha256, and who wrote it): saving over a checkpoint whose card a person
wrote or edited carries that card into the new checkpoint unchanged, never replacing it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from toolkit import methods
from toolkit.core.errors import CheckpointError
from toolkit.io import json_reader
from toolkit.io.files import sha256_file
from toolkit.io.layout import CARD_FILE, CONFIG_FILE
from toolkit.sources.presets import PRESETS, Preset
from toolkit.sources.references import HUB, PRESET, SELF

LIBRARY = "model-surgery-decoding"


def _preset(reference: str) -> Preset | None:
    """The model preset a written reference names, if it names one."""
    return PRESETS.get(reference.removeprefix(PRESET)) if reference.startswith(PRESET) else None


def base_model(reference: str) -> str | None:
    """The Hub id of the base a written reference names (None for a local or inside base)."""
    if reference.startswith(HUB):
        return reference.removeprefix(HUB)
    preset = _preset(reference)
    return preset.hub_id if preset else None


def carried(target: Path) -> Path | None:
    """The card of the checkpoint at `target` when a person wrote or edited it (the next save
    keeps it), else None."""
    path = target / CARD_FILE
    try:
        record = json_reader.load(target / CONFIG_FILE).get("card")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(record, dict) or not path.is_file():
        return None
    if path.is_symlink():
        raise CheckpointError(f"{path} is a symbolic link; the save would follow it: replace "
                              "it with the card's own text, or remove it")
    edited = record.get("by") == "user" or sha256_file(path) != record.get("sha256")
    return path if edited else None


def write(directory: Path, reference: str, graft_config, decoding,
          prompt_format: str | None, kept: Path | None = None) -> dict:
    """Write README.md into the checkpoint folder being saved (a copy of `kept`, a person's
    card, when given); returns the record for augment_config.json's "card"."""
    path = directory / CARD_FILE
    if kept is not None:
        shutil.copyfile(kept, path)
        return {"by": "user", "sha256": sha256_file(path)}
    active = methods.active(decoding)
    front = {"library_name": LIBRARY, "pipeline_tag": "text-generation",
             "tags": ["model-surgery", *(m.name for m in active)]}
    hub_id = base_model(reference)
    if hub_id:
        front["base_model"] = hub_id
    body = _body(reference, hub_id, graft_config, decoding, active, prompt_format)
    path.write_text("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + body,
                    encoding="utf-8")
    return {"by": "toolkit", "sha256": sha256_file(path)}


def _licence(reference: str) -> str:
    """The licence line: a preset's terms, else a pointer to the base model's own."""
    preset = _preset(reference)
    return (f"the base model's, {preset.license}" if preset
            else "the base model's; see its own model card")


def _body(reference, hub_id, graft_config, decoding, active, prompt_format) -> str:
    base = hub_id or ("the base model saved under `base/`" if reference == SELF
                      else f"the local base model at `{reference.split(':', 1)[-1]}` "
                           "(relative to this folder)")
    saved = [f"- {m.label(decoding.method(m.name))}" for m in active] or ["- none (plain)"]
    head = graft_config.head
    lines = [
        f"# A decoding graft on {hub_id or 'a local base model'}",
        "",
        f"This checkpoint adds decoding machinery to {base}, without changing its weights: an "
        f"early-exit logits tap (candidate layers: {graft_config.layers}) "
        f"and an adaptive-temperature head (a small MLP over the last hidden state, "
        f"{head.level} level, temperatures {list(head.temperatures)}).",
        "",
        "Decoding saved as its default:",
        *saved,
        "",
        f"Prompt convention the head was trained with: {prompt_format or 'not recorded'}.",
        "",
        f"Licence: {_licence(reference)}",
        "",
        "## Use",
        "",
        "```python",
        "from toolkit import AugmentedModel",
        "",
        'am = AugmentedModel.from_pretrained("THIS_FOLDER_OR_REPO_ID")',
        'out = am.generate(**am.encode("Hello"), max_new_tokens=32)',
        "```",
        "",
        "With transformers alone, on the base model: `model.generate(..., "
        "custom_generate=\"THIS_FOLDER\", trust_remote_code=True)`.",
        "",
    ]
    return "\n".join(lines)
