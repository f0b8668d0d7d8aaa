"""model-surgery for decoding: graft an early-exit tap and an adaptive-temperature head onto
Hugging Face causal LMs, decode with the registered methods (SLED, DoLa, ... and plugins:
`toolkit.methods`), train the head with LPO, and ship safetensors checkpoints."""

__version__ = "0.1.0"


_LAZY = {"AugmentedModel": "toolkit.graft.augmented", "DecodingConfig": "toolkit.methods.options",
         "GraftConfig": "toolkit.methods.options", "HeadConfig": "toolkit.methods.options"}


def __getattr__(name: str):
    """`from toolkit import AugmentedModel, DecodingConfig` without importing torch or
    transformers up front."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
