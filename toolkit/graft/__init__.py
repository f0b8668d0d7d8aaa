"""Model plumbing: architecture discovery, early-exit tap, adaptive-temperature head, AugmentedModel.

The names below are imported on first use, so `import toolkit.graft.<module>` of a light module
(e.g. `layers`) does not pull in transformers.
"""

from importlib import import_module

_EXPORTS = {
    "AugmentedModel": "augmented", "REFUSED": "families", "ModelParts": "families",
    "model_parts": "families", "AdaptiveDecoderHead": "head", "candidate_layers": "layers",
    "SledLogitsProcessor": "processors", "TopNSigmaLogitsProcessor": "processors",
    "AugmentedOutput": "records", "EarlyExitTap": "tap",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"toolkit.graft.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'toolkit.graft' has no attribute {name!r}")
