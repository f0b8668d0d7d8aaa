"""A checkpoint's `hub:` base is a Hub id and nothing else: a local path written there is
refused (it was resolved against the working directory, not the checkpoint), and a local
folder that happens to bear the id's name is never read in its place."""

from __future__ import annotations

import pytest

from toolkit.core.errors import CheckpointError
from toolkit.sources import hub
from toolkit.sources.references import on_hub, read_reference


@pytest.mark.parametrize("base", ["hub:./model", "hub:/etc", "hub:../x", "hub:a/b/c",
                                  "hub:~/model", "hub:checkpoints/x", "hub:org/na\0me"])
def test_a_path_after_hub_is_refused(tmp_path, base):
    with pytest.raises(CheckpointError, match="which is no model reference \\(hub: takes a Hub"):
        read_reference(base, tmp_path)


def test_a_hub_id_is_read_as_one_even_where_a_folder_of_that_name_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert read_reference("hub:org/name", tmp_path) == "org/name"
    assert on_hub("hub:org/name") and not on_hub("self") and not on_hub(None)
    assert not hub.is_hub_id("org/name")  # as a model.path it is the local folder
    assert hub.is_hub_name("org/name")  # as a checkpoint's hub: base it is the Hub id
    fetched = []
    monkeypatch.setattr("huggingface_hub.snapshot_download",
                        lambda repo_id, **kw: fetched.append(repo_id) or str(tmp_path / "snap"))
    assert hub.local_dir("org/name", from_hub=True) != tmp_path / "org" / "name"
    assert fetched == ["org/name"]
