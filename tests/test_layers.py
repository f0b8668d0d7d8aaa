"""docs/DESIGN.md's layer rule, checked on the source: a module imports only from its own
package and from the layers above its own (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "toolkit"

# docs/DESIGN.md's layers, from the leaves out (the longest matching prefix decides).
LAYERS = {
    "toolkit.core": 1, "toolkit.decoding": 1, "toolkit.core.errors": 1, "toolkit.core.answers": 1,
    "toolkit.methods": 2, "toolkit.io": 2, "toolkit.core.runtime": 2,
    "toolkit.core.options": 3, "toolkit.sources": 3,
    "toolkit.graft": 4,
    "toolkit.testing": 5, "toolkit.serving": 5,
    "toolkit.lpo": 6,
    "toolkit.eval": 7,
    "toolkit.bench": 8,
    "toolkit.recipes": 9,
    "toolkit.cli": 10,
}


def _layer(module: str) -> tuple[str, int] | None:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    return None


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "toolkit":
                found |= {f"toolkit.{alias.name}" for alias in node.names}
            elif node.module.startswith("toolkit."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("toolkit.")}
    return found


def test_every_module_has_a_layer():
    unplaced = [m for m, _ in _modules() if m != "toolkit" and _layer(m) is None]
    assert not unplaced, f"modules outside docs/DESIGN.md's layers: {unplaced}"


@pytest.mark.parametrize("module, path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_follow_the_layers(module, path):
    if module == "toolkit":  # the package root re-exports lazily
        return
    home, rank = _layer(module)
    wrong = []
    for target in sorted(_imports(path)):
        placed = _layer(target)
        if placed is None or placed[0] == home:
            continue
        if placed[1] >= rank:
            wrong.append(f"{target} (layer {placed[1]})")
    assert not wrong, f"{module} (layer {rank}) imports {', '.join(wrong)}"
