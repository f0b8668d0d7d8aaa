"""Tiny seeded causal LMs of every supported family, built from configs (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2Config,
)

from toolkit.core.errors import ConfigError
from toolkit.testing.tokenizer import VOCAB_SIZE, build_tokenizer

# A larger init scale than the default 0.02 so that greedy replies of a random model vary with
# the prompt instead of repeating one token.
INITIALIZER_RANGE = 0.2
# Norm weights get seeded noise of this std (so that a wrong norm formula shows in tests).
NORM_NOISE = 0.3
# Tied families (Gemma): with full-size embeddings (scaled by sqrt(d)) the residual stream is
# dominated by the input token, and a random model just repeats it. Shrink their embeddings and
# widen the noise on their (1 + w) norm weights.
_TIED_TWEAKS = {"embedding_factor": 0.1, "norm_noise": 1.0}

_COMMON = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    initializer_range=INITIALIZER_RANGE,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)

_TINY_CONFIGS: dict[str, tuple[type[PretrainedConfig], dict]] = {
    "llama": (LlamaConfig, {}),
    "mistral": (MistralConfig, {"sliding_window": None}),
    "qwen2": (Qwen2Config, {"tie_word_embeddings": False}),
    "gemma": (GemmaConfig, {"head_dim": 16}),
    "gemma2": (Gemma2Config, {"head_dim": 16, "sliding_window": 8}),
    "gemma3_text": (Gemma3TextConfig, {"head_dim": 16, "sliding_window": 8}),
    "mixtral": (MixtralConfig, {"num_local_experts": 4, "num_experts_per_tok": 2}),
}

TINY_FAMILIES = tuple(_TINY_CONFIGS)
# Overrides giving head size 64 (d=128, 2 heads): vLLM's CPU attention refuses head size 16.
VLLM_SHAPE = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2,
              "num_key_value_heads": 1, "head_dim": 64}


def tiny_config(family: str = "llama", seed: int = 0, **overrides) -> PretrainedConfig:
    """The tiny config of `family`: vocab 300, d=64, 4 layers, 4 heads, 2 kv heads.

    Special token ids match `build_tokenizer()`. `seed` does not change the config; it is
    accepted so that config and weights can be named by the same (family, seed) pair.
    `overrides` replace config keys (e.g. `VLLM_SHAPE`: the head size vLLM's CPU attention takes).
    """
    if family not in _TINY_CONFIGS:
        raise ConfigError(f"family={family!r} is not a tiny test family; choose one of {TINY_FAMILIES}")
    cls, extra = _TINY_CONFIGS[family]
    config = cls(**{**_COMMON, **extra, **overrides})
    config.dtype = torch.float32
    return config


def build_tiny_model(family: str = "llama", seed: int = 0, **overrides) -> PreTrainedModel:
    """A float32 tiny model in eval mode whose weights depend only on (family, seed, overrides).

    The global RNG state is left untouched.
    """
    config = tiny_config(family, seed, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        _perturb(model, **(_TIED_TWEAKS if config.tie_word_embeddings else {}))
    return model.eval()


@torch.no_grad()
def _perturb(model: PreTrainedModel, embedding_factor: float = 1.0, norm_noise: float = NORM_NOISE):
    model.get_input_embeddings().weight.mul_(embedding_factor)
    for name, param in model.named_parameters():
        if "norm" in name:
            param.add_(torch.randn_like(param) * norm_noise)


def save_tiny(directory: str | Path, family: str = "llama", seed: int = 0, **overrides) -> Path:
    """Write a tiny model (safetensors, via `save_pretrained`) and the tokenizer into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    build_tiny_model(family, seed, **overrides).save_pretrained(directory, safe_serialization=True)
    build_tokenizer().save_pretrained(directory)
    return directory
