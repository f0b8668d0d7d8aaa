"""model-surgery for decoding: graft SLED, DoLa, top-n-sigma and an adaptive-temperature head
onto Hugging Face causal LMs, train the head with LPO, and ship safetensors checkpoints."""

__version__ = "0.1.0"
