"""An installed decoding-method plugin that fails to load: every command is one line naming the
entry point, its module and the package to fix, exit 2; `--help` still works and says so.

The plugin is a real distribution (a dist-info folder on the path of a `cli.py` subprocess),
so the import of the CLI itself is exercised too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHY = ("decoding-method plugin 'broken' (broken_pl:METHOD, entry point group "
       "model_surgery.methods) failed to import (RuntimeError: boom); fix or uninstall the "
       "package 'broken-pl' that provides it")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "broken_pl").mkdir()
    (root / "broken_pl" / "__init__.py").write_text("raise RuntimeError('boom')\n")
    info = root / "broken_pl-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-pl\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[model_surgery.methods]\nbroken = broken_pl:METHOD\n")
    return root


def _cli(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT), str(site)))}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_help_works_and_names_the_broken_plugin(site, tmp_path):
    shown = _cli(site, tmp_path, "--help")
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    assert shown.stdout.rstrip().endswith(f"note: {WHY}")
    assert "decoding methods (recipe section decoding.NAME): sled, dola" in shown.stdout
    sub = _cli(site, tmp_path, "eval", "--help")
    assert sub.returncode == 0 and f"note: {WHY}" in sub.stdout


def test_a_command_is_one_line_and_exit_2(site, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("generate:\n  prompts: [hello]\n")
    ran = _cli(site, tmp_path, "generate", str(recipe))
    assert (ran.returncode, ran.stdout, ran.stderr) == (2, "", f"error: {WHY}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_every_registry_read_raises_not_only_the_first(monkeypatch):
    from importlib import metadata

    from toolkit import methods
    from toolkit.core.errors import ConfigError
    from toolkit.methods import registry

    entry = metadata.EntryPoint("gone", "no_such_plugin_module:METHOD", methods.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [entry])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_broken", [])
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"^decoding-method plugin 'gone' \(no_such_plugin_"
                                              r"module:METHOD, .*ModuleNotFoundError.*uninstall "
                                              "the package that provides it$"):
            methods.all_methods()
    assert "sled" in [m.name for m in methods.loaded_methods()]
