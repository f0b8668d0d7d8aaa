"""Model plumbing: family table, early-exit tap, adaptive-temperature head, AugmentedModel."""

from toolkit.graft.families import SUPPORTED, ModelParts, resolve
from toolkit.graft.layers import candidate_layers
from toolkit.graft.tap import EarlyExitTap
