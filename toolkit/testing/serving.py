"""A checkpoint for the serving tests and benchmarks: a tiny Llama with head size 64 (vLLM's CPU
attention takes no smaller), saved the way the quickstart saves its own (SLED + top-n-sigma + the
head, sampling), with a head that always picks temperature 0 so its replies are deterministic."""

from __future__ import annotations

from pathlib import Path

import torch

SLED = {"evolution_rate": 5.0, "evolution_scale": 20}  # strong enough to change tiny replies
PROMPTS = [[1, 5, 9, 33, 70], [1, 44, 8], [1, 100, 200, 17, 3, 99]]
# The server as the tests start it: float32 for parity, little memory (compiled, as by default).
SERVER_ARGS = ["--dtype", "float32", "--gpu-memory-utilization", "0.05", "--max-model-len", "256",
               "--seed", "0"]
# Greedy parity cases: method -> (vllm_xargs of a request, AugmentedModel.generate keywords),
# the checkpoint's sampling-only steps (top-n-sigma, the head) switched off on both sides.
OFF = {"top_n_sigma": "false", "adaptive_temperature": "false"}
GREEDY = {
    "plain": ({**OFF, "sled": "false"}, dict(sled=False)),
    "sled": (OFF, {}),
    "dola": ({**OFF, "dola": "true"}, dict(sled=False, dola=True)),
}


def save_serving_checkpoint(root: Path, family: str = "llama") -> Path:
    """Write the tiny base (root/base) and the checkpoint (root/ckpt); returns the checkpoint."""
    from toolkit import AugmentedModel
    from toolkit.methods.options import (
        AdaptiveOptions,
        DecodingConfig,
        GraftConfig,
        HeadConfig,
        SledOptions,
        TopNSigmaOptions,
    )
    from toolkit.testing.models import VLLM_SHAPE, save_tiny

    base = save_tiny(root / "base", family, 0, **VLLM_SHAPE)
    am = AugmentedModel.graft(str(base), GraftConfig(head=HeadConfig(hidden_size=32,
                                                                     temperatures=[0.0, 1.0])))
    with torch.no_grad():
        am.head.mlp[-1].bias.copy_(torch.tensor([5.0, 0.0]))
    am.decoding = DecodingConfig(sled=SledOptions(enabled=True, **SLED),
                                 top_n_sigma=TopNSigmaOptions(enabled=True, n=1.0),
                                 adaptive_temperature=AdaptiveOptions(enabled=True),
                                 do_sample=True, max_new_tokens=12)
    return am.save_pretrained(root / "ckpt")
