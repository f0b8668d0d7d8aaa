"""`both_paths`: run a module's tests once on the C kernels and once on torch ops
(`toolkit.decoding.native`), so every golden, precision and property test holds for both."""

from __future__ import annotations

import pytest

from toolkit.decoding import native


@pytest.fixture(scope="module", params=["C kernels", "torch ops"])
def both_paths(request):
    if request.param == "C kernels" and not native.available():
        pytest.skip(native.status())
    native.use_native(request.param == "C kernels")
    yield request.param
    native.use_native(True)
