"""Model plumbing: architecture discovery, early-exit tap, adaptive-temperature head, AugmentedModel."""

from toolkit.graft.augmented import AugmentedModel as AugmentedModel
from toolkit.graft.families import REFUSED as REFUSED
from toolkit.graft.families import ModelParts as ModelParts
from toolkit.graft.families import resolve as resolve
from toolkit.graft.head import AdaptiveDecoderHead as AdaptiveDecoderHead
from toolkit.graft.layers import candidate_layers as candidate_layers
from toolkit.graft.processors import SledLogitsProcessor as SledLogitsProcessor
from toolkit.graft.processors import TopNSigmaLogitsProcessor as TopNSigmaLogitsProcessor
from toolkit.graft.records import AugmentedOutput as AugmentedOutput
from toolkit.graft.tap import EarlyExitTap as EarlyExitTap
