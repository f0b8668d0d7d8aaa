"""The checkpoint the serving tests serve (toolkit.testing.serving)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.testing.serving import save_serving_checkpoint


@pytest.fixture(scope="session")
def serving_checkpoint(tmp_path_factory) -> Path:
    return save_serving_checkpoint(tmp_path_factory.mktemp("serving"))
