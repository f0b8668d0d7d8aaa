"""docs/DESIGN.md's layer rule, checked on the source: a module imports only from its own
package and from the layers above its own (function-level imports included); every layer is a
folder; no modules import each other in a ring, inside a package either."""

from __future__ import annotations

from pathlib import Path

import pytest
from _import_graph import against_layers, circles, folder_table, graph, layer

ROOT = Path(__file__).resolve().parents[1]

# docs/DESIGN.md's layers, from the leaves out: one folder each, no exceptions for a module.
LAYERS = {
    "toolkit.decoding": 1,
    "toolkit.core": 2,
    "toolkit.methods": 3, "toolkit.io": 3,
    "toolkit.sources": 4,
    "toolkit.graft": 5,
    "toolkit.testing": 6, "toolkit.serving": 6,
    "toolkit.lpo": 7,
    "toolkit.eval": 8,
    "toolkit.bench": 9,
    "toolkit.recipes": 10,
    "toolkit.cli": 11,
}
EDGES = graph(ROOT)


def test_every_module_has_a_layer():
    unplaced = [m for m in EDGES if m != "toolkit" and layer(m, LAYERS) is None]
    assert not unplaced, f"modules outside docs/DESIGN.md's layers: {unplaced}"


def test_every_layer_is_a_folder():
    assert folder_table(ROOT, LAYERS) == LAYERS


@pytest.mark.parametrize("module", sorted(EDGES))
def test_imports_follow_the_layers(module):
    wrong = [target for source, target in against_layers({module: EDGES[module]}, LAYERS)]
    rank = (layer(module, LAYERS) or ("", 0))[1]
    assert not wrong, (f"{module} (layer {rank}) imports "
                       + ", ".join(f"{t} (layer {layer(t, LAYERS)[1]})" for t in wrong))


def test_no_circles():
    assert not circles(EDGES), f"modules that import each other: {circles(EDGES)}"
