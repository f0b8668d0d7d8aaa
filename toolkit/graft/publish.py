"""Upload a checkpoint to the Hugging Face Hub, as `PreTrainedModel.push_to_hub` does.

The checkpoint is saved into a temporary folder and sent with huggingface_hub's
`HfApi.create_repo` (exist_ok) and `HfApi.upload_folder`; `AugmentedModel.from_pretrained`
then loads it by its repo id. A head-only checkpoint must refer to a base that others can get:
a model preset or a Hub id; a base that is a local directory travels only inside the
checkpoint (`self_contained=True`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from toolkit.core.errors import CheckpointError
from toolkit.sources import hub


def push_to_hub(model, repo_id: str, *, self_contained: bool = False, private: bool | None = None,
                token: str | None = None, revision: str | None = None,
                commit_message: str = "Upload model-surgery checkpoint") -> Any:
    """Save `model` (an AugmentedModel) and upload it to the Hub repo `repo_id`.

    Args:
        repo_id: `org/name` of the model repo (created when missing).
        self_contained: also upload the base model's weights (under `base/`).
        private: create the repo private (huggingface_hub's default when None).
        token: a Hub token (default: the one huggingface_hub finds, `hf auth login`).
        revision: the branch to commit to (default: the repo's default branch).
        commit_message: the commit message.

    Returns:
        huggingface_hub's `CommitInfo` of the upload.
    """
    from huggingface_hub import HfApi

    from toolkit.sources.presets import preset_at

    reference = model.base_reference
    if not self_contained and not hub.is_hub_id(reference) and preset_at(reference) is None:
        raise CheckpointError(
            f"cannot push to {repo_id}: the base is the local directory {reference}, which "
            "nobody who downloads the checkpoint has; push with self_contained=True, or graft "
            "on a Hub id or a model preset"
        )
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="surgery-push-") as tmp:
        folder = model.save_pretrained(Path(tmp) / "checkpoint", self_contained=self_contained)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            return api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                                     repo_type="model", revision=revision,
                                     commit_message=commit_message)
        except Exception as err:  # HTTP, auth, network: all end the same way
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"cannot push to {repo_id} on the Hugging Face Hub ({reason}); check the repo "
                "id, your token (hf auth login) and the network"
            ) from err
