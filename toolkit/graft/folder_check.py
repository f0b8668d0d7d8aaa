"""The self-check of a checkpoint's `custom_generate/` folder, which transformers runs as remote
code (`generate(custom_generate=DIR, trust_remote_code=True)`).

The folder's entry file, `generate.py`, calls `verify_folder` as its first statement, at
import, before the rest of that file runs and before any toolkit code decodes; and again at
each call (transformers keeps the imported module between calls). It compares, with the sha256
hashes under `files` in the checkpoint's augment_config.json:

- the copy of `generate.py` that transformers runs (from its modules cache);
- every file under the checkpoint's `custom_generate/`: a changed, missing or added file.

It refuses to decode, with one line, when any differs, when the checkpoint has no readable
augment_config.json or it lists no hash for `generate.py`, when the checkpoint is not a local
folder, or when the folder being run cannot be told.

What it cannot cover: code placed in `generate.py` before that first statement, or an edit
that removes it (the check lives in the file it checks); an edit to a file together with its
hash in augment_config.json (the hashes are not signed); the installed toolkit and transformers.
It catches edits and corruption, not an attacker: load only checkpoints you trust with
`trust_remote_code=True`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from toolkit.core.errors import CheckpointError, reason
from toolkit.graft import integrity
from toolkit.io import json_reader
from toolkit.io.files import sha256_file
from toolkit.io.layout import CONFIG_FILE

FOLDER = "custom_generate"
ENTRY = f"{FOLDER}/generate.py"
_CALLER = "transformers.generation.utils"  # the module whose generate() runs the folder


def calling_folder() -> str | None:
    """The `custom_generate=DIR` of the transformers `generate` call that is importing or
    running a folder's generate.py (transformers passes the folder neither to the function nor
    in the copy of the file it imports, so it is read from that call's frame); None when no
    such call is on the stack."""
    frame = sys._getframe(1)
    while frame is not None:
        value = frame.f_locals.get("custom_generate")
        if (frame.f_globals.get("__name__") == _CALLER and frame.f_code.co_name == "generate"
                and isinstance(value, (str, Path))):
            return str(value)
        frame = frame.f_back
    return None


def verify_folder(checkpoint, running: Path) -> None:
    """Check the folder `checkpoint`/custom_generate and the copy `running` of its generate.py
    (module docstring); CheckpointError with one line when anything differs or cannot be
    checked."""
    if checkpoint is None:
        raise CheckpointError(
            f"{running}: cannot tell which checkpoint this custom_generate/generate.py belongs "
            "to, so its files cannot be checked and it does not decode; run it as "
            "model.generate(ids, custom_generate=CHECKPOINT_DIR, trust_remote_code=True)"
        )
    directory = Path(checkpoint)
    ours = _recorded(directory)
    found = {p.relative_to(directory).as_posix() for p in (directory / FOLDER).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    added = sorted(found - set(ours))
    changed = ([f"{ENTRY} (the copy transformers runs)"]
               if sha256_file(running) != ours[ENTRY] else [])
    if added or changed:
        raise CheckpointError(
            f"{directory / FOLDER}: {', '.join(changed + added)} "
            f"{'is' if len(changed + added) == 1 else 'are'} not what the checkpoint saved "
            f"(sha256 in {CONFIG_FILE}); this folder's code was changed after saving: restore it "
            "or save the checkpoint again"
        )
    integrity.check_files(directory, ours)


def _recorded(directory: Path) -> dict[str, str]:
    """{name: sha256} that augment_config.json records for the folder's files; CheckpointError
    when there is no such record."""
    config = directory / CONFIG_FILE
    if not directory.is_dir():
        why = "it is not a local checkpoint folder (download it and give its path)"
    elif not config.is_file():
        why = f"the checkpoint has no {CONFIG_FILE}"
    else:
        try:
            listed = json_reader.load(config)["files"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            listed, why = {}, f"{config} cannot be read ({reason(err)})"
        else:
            why = f"{config} lists no sha256 for {ENTRY}"
        ours = ({k: v for k, v in listed.items() if k.startswith(f"{FOLDER}/")}
                if isinstance(listed, dict) else {})
        if isinstance(ours.get(ENTRY), str):
            return ours
    raise CheckpointError(
        f"{directory / FOLDER}: {why}, so the folder's code cannot be checked against the "
        f"hashes saved with it and it does not decode; restore {CONFIG_FILE} or save the "
        "checkpoint again"
    )
