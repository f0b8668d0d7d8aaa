"""The command table: everything about a subcommand is its row of `COMMANDS`."""

from __future__ import annotations

import ast
from pathlib import Path

from toolkit.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


def test_a_subcommand_is_its_row():
    """Its checks, inputs and outputs are in its `COMMANDS` row: no code of the CLI compares a
    string with a subcommand's name."""
    found = []
    for path in sorted((ROOT / "toolkit" / "cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                named = {c.value for side in (node.left, *node.comparators)
                         for c in ast.walk(side) if isinstance(c, ast.Constant)}
                found += [f"{path.relative_to(ROOT)}:{node.lineno}" for _ in named & set(COMMANDS)]
    assert not found
