"""The toolkit's import graph, read from the source (function-level and TYPE_CHECKING imports
included), and what docs/DESIGN.md's layer rule says about it.

`tests/test_layers.py` checks this checkout with it; `benchmarks/import_structure.py` applies
the same code to any checkout (an older commit too), so figures before and after a change come
from one reading of the code.
"""

from __future__ import annotations

import ast
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under `root/toolkit` (a package is its __init__)."""
    found = {}
    for path in sorted((root / "toolkit").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The toolkit modules `path` imports: `from toolkit.a import b` names the module `toolkit.a.b`
    when there is one, else `toolkit.a`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "toolkit" or node.module.startswith("toolkit."):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("toolkit.")}
    return found


def graph(root: Path) -> dict[str, set[str]]:
    """module -> the toolkit modules it imports (itself excluded)."""
    found = modules(root)
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def layer_table(root: Path) -> dict[str, int]:
    """The `LAYERS` table (prefix -> rank) of `root/tests/test_layers.py`, read without importing
    it, so an older checkout's own table is read too."""
    tree = ast.parse((root / "tests" / "test_layers.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "LAYERS"
                                                 for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError(f"{root}/tests/test_layers.py has no LAYERS table")


def layer(module: str, table: dict[str, int]) -> tuple[str, int] | None:
    """(the table's longest prefix of `module`, its rank), or None when none matches."""
    for prefix in sorted(table, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, table[prefix]
    return None


def folder_table(root: Path, table: dict[str, int]) -> dict[str, int]:
    """`table` with only the entries that name a folder of `root/toolkit`: the layers as the
    folders show them, without exceptions for single modules."""
    return {prefix: rank for prefix, rank in table.items()
            if (root / Path(*prefix.split("."))).is_dir()}


def against_layers(edges: dict[str, set[str]], table: dict[str, int]) -> list[tuple[str, str]]:
    """(module, imported) for every import of another package that is not in a layer above the
    module's own (the root package `toolkit`, which re-exports lazily, is not checked)."""
    wrong = []
    for module, targets in sorted(edges.items()):
        home = layer(module, table)
        if module == "toolkit" or home is None:
            continue
        for target in sorted(targets):
            placed = layer(target, table)
            if placed is not None and placed[0] != home[0] and placed[1] >= home[1]:
                wrong.append((module, target))
    return wrong


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import each other in a ring (strongly connected components of
    more than one module, Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            ring = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                ring.append(member)
                if member == node:
                    break
            if len(ring) > 1:
                found.append(sorted(ring))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)
