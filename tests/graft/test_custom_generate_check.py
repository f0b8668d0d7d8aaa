"""A checkpoint's custom_generate/ folder checks itself before anything else of it runs: code
appended to its generate.py or to a module it imports never runs, a changed or added file stops
the call with one line, and a folder without its record (augment_config.json) refuses to decode
rather than skipping the check. What the check cannot cover is said in
`toolkit.graft.folder_check` and docs/transformers.md."""

from __future__ import annotations

import json

import pytest
from _generation import graft, prompt_batch
from transformers import AutoModelForCausalLM

from toolkit.core.errors import CheckpointError

CHANGED = ("is not what the checkpoint saved (sha256 in augment_config.json); this folder's code "
           "was changed after saving: restore it or save the checkpoint again")
NO_RECORD = ("so the folder's code cannot be checked against the hashes saved with it and it "
             "does not decode; restore augment_config.json or save the checkpoint again")


@pytest.fixture(scope="module")
def setup(tiny_llama_dir):
    am = graft(tiny_llama_dir)
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    return am, plain, prompt_batch(am.tokenizer)[0]


def _refusal(plain, ckpt, ids) -> str:
    with pytest.raises(CheckpointError) as err:
        plain.generate(ids, max_new_tokens=2, custom_generate=str(ckpt), trust_remote_code=True,
                       sled=True)
    return str(err.value)


def _marking(marker) -> str:
    return f"\nopen({str(marker)!r}, 'w').close()\n"


def test_code_appended_to_generate_py_never_runs(setup, tmp_path):
    am, plain, ids = setup
    ckpt = am.save_pretrained(tmp_path / "appended")
    marker = tmp_path / "ran"
    entry = ckpt / "custom_generate" / "generate.py"
    entry.write_text(entry.read_text() + _marking(marker))
    assert _refusal(plain, ckpt, ids) == (
        f"{ckpt}/custom_generate: custom_generate/generate.py (the copy transformers runs) "
        f"{CHANGED}")
    assert not marker.exists(), "code of the edited folder ran before the check"


def test_a_module_imported_after_the_check_never_runs(setup, tmp_path):
    am, plain, ids = setup
    ckpt = am.save_pretrained(tmp_path / "imported")
    marker = tmp_path / "ran"
    folder = ckpt / "custom_generate"
    (folder / "helper.py").write_text(_marking(marker))
    entry = folder / "generate.py"
    entry.write_text(entry.read_text() + "\nfrom .helper import *  # noqa\n")
    assert _refusal(plain, ckpt, ids) == (
        f"{folder}: custom_generate/generate.py (the copy transformers runs), "
        f"custom_generate/helper.py {CHANGED.replace('is not', 'are not')}")
    assert not marker.exists(), "a module of the edited folder ran before the check"


@pytest.mark.parametrize("edit", ["requirements.txt", "added.py"])
def test_other_changed_or_added_files_stop_the_call(setup, tmp_path, edit):
    am, plain, ids = setup
    ckpt = am.save_pretrained(tmp_path / "edited")
    target = ckpt / "custom_generate" / edit
    target.write_text((target.read_text() if target.exists() else "") + "numpy\n")
    expected = (f"{target} does not match the content hash in augment_config.json; the file was "
                "changed or corrupted after saving: restore it or save the checkpoint again"
                if edit == "requirements.txt"
                else f"{ckpt}/custom_generate: custom_generate/added.py {CHANGED}")
    assert _refusal(plain, ckpt, ids) == expected


def test_a_folder_without_its_record_refuses_to_decode(setup, tmp_path):
    am, plain, ids = setup
    ckpt = am.save_pretrained(tmp_path / "unrecorded")
    (ckpt / "augment_config.json").unlink()
    assert _refusal(plain, ckpt, ids) == (
        f"{ckpt}/custom_generate: the checkpoint has no augment_config.json, {NO_RECORD}")


def test_a_record_without_the_folders_hashes_refuses_to_decode(setup, tmp_path):
    am, plain, ids = setup
    ckpt = am.save_pretrained(tmp_path / "unlisted")
    config = ckpt / "augment_config.json"
    data = json.loads(config.read_text())
    data["files"] = {k: v for k, v in data["files"].items() if not k.startswith("custom_generate")}
    config.write_text(json.dumps(data))
    assert _refusal(plain, ckpt, ids) == (
        f"{ckpt}/custom_generate: {config} lists no sha256 for custom_generate/generate.py, "
        f"{NO_RECORD}")
