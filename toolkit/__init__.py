"""model-surgery for decoding: graft an early-exit tap and an adaptive-temperature head onto
Hugging Face causal LMs, decode with the registered methods (SLED, DoLa, ... and plugins:
`toolkit.methods`), train the head with LPO, and ship safetensors checkpoints."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`from toolkit import AugmentedModel` without importing torch/transformers up front."""
    if name == "AugmentedModel":
        from toolkit.graft.augmented import AugmentedModel

        return AugmentedModel
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
