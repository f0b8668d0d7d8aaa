"""Fixtures shared by the method tests."""

from __future__ import annotations

import pytest

from toolkit.methods import registry


@pytest.fixture
def restored():
    saved = dict(registry._METHODS)
    yield
    registry._METHODS.clear()
    registry._METHODS.update(saved)
