"""Named model shapes with random weights, for benchmarks without any checkpoint
(`model.random_shape`).

"tiny" is for tests; "llama-d512" (d=512, 16 layers, V=32000) runs on a CPU; "llama-7b" and
"llama-3-8b" are the real models' shapes for GPU users. Nothing is downloaded.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from toolkit.core.errors import ConfigError, check_choice

SHAPES: dict[str, dict] = {
    "tiny": dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2),
    "llama-d512": dict(vocab_size=32000, hidden_size=512, intermediate_size=1376,
                       num_hidden_layers=16, num_attention_heads=8, num_key_value_heads=8),
    "llama-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                     num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32),
    "llama-3-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       rope_theta=500000.0, max_position_embeddings=8192),
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def shape_config(shape: str) -> LlamaConfig:
    """The LlamaConfig of a named shape; generation has no EOS so every run has full length."""
    check_choice("model.random_shape", shape, tuple(SHAPES))
    return LlamaConfig(**SHAPES[shape], bos_token_id=None, eos_token_id=None, pad_token_id=0,
                       tie_word_embeddings=False)


def random_model(shape: str, dtype: str | torch.dtype = "float32", device: str = "cpu",
                 seed: int = 0) -> LlamaForCausalLM:
    """A LlamaForCausalLM of the named shape with seeded random weights, built on `device`.

    dtype "auto" is bfloat16 on CUDA and float32 elsewhere.
    """
    if dtype == "auto":
        dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ConfigError(f"dtype={dtype!r} is not allowed; choose auto, {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    config = shape_config(shape)
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()
