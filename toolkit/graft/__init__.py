"""Model plumbing: family table, early-exit tap, adaptive-temperature head, AugmentedModel."""

from toolkit.graft.families import SUPPORTED as SUPPORTED
from toolkit.graft.families import ModelParts as ModelParts
from toolkit.graft.families import resolve as resolve
from toolkit.graft.head import AdaptiveDecoderHead as AdaptiveDecoderHead
from toolkit.graft.layers import candidate_layers as candidate_layers
from toolkit.graft.tap import EarlyExitTap as EarlyExitTap
