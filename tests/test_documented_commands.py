"""Every `cli.py` command quoted in a recipe's header or in the README parses and validates as
written (the shell's quoting applied by bash itself): `--print-config` must exit 0. The runnable
ones are executed by their own tests (test_cli, test_real_*, test_eval_sweep)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from toolkit.cli.main import main

ROOT = Path(__file__).parent.parent
COMMAND = re.compile(r"python3? cli\.py ((?:graft|collect|train|generate|eval|bench|run) [^`\n]*)")
PLACEHOLDER_RECIPE = "recipes/tiny.yaml"  # the README's generic `RECIPE`


def documented() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                found += [(path.name, m.group(1).strip()) for m in COMMAND.finditer(line)]
    readme = (ROOT / "README.md").read_text()
    found += [("README.md", m.group(1).strip()) for m in COMMAND.finditer(readme)]
    return found


def shell_words(text: str) -> list[str]:
    """The argv bash would pass for `text` (quotes removed, $(...) expanded)."""
    done = subprocess.run(["bash", "-c", f"printf '%s\\0' {text}"], capture_output=True,
                          text=True, check=True)
    return done.stdout.split("\0")[:-1]


def test_the_docs_quote_commands():
    sources = {source for source, _ in documented()}
    assert {"README.md", "quickstart.yaml", "sled_llama2_7b.yaml", "sled_smollm2.yaml"} <= sources


@pytest.mark.parametrize("source, command", documented(), ids=lambda v: str(v)[:70])
def test_documented_command_validates(source, command, capsys):
    argv = shell_words(command.replace(" RECIPE ", f" {PLACEHOLDER_RECIPE} "))
    assert main([*argv, "--print-config"]) == 0, capsys.readouterr().err
