"""Entropy-based dynamic temperature, EDT (Zhang, Bao and Huang, 2024; docs/methods.md section 5b).

Per row: H = the entropy of softmax(logits) in nats (0 log 0 = 0), and the row's temperature

    T = t0 * base ** (theta / H)

with base N = 0.8 in the paper. base < 1 and theta / H > 0, so T < t0: a confident row (low H)
gets a low temperature, an uncertain one (high H) a temperature close to t0. H = 0 (one token
holds all the mass) gives T = 0, i.e. greedy; theta = 0 or base = 1 give T = t0 everywhere. The
logits are then divided by T as `apply_temperature` does (T = 0: one-hot on the argmax).
"""

from __future__ import annotations

import math

import torch

from toolkit.decoding.temperature import apply_temperature


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of softmax(logits) per row: (B, V) -> (B,) float32, 0 log 0 = 0."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    terms = (log_p.exp() * log_p).nan_to_num(nan=0.0)  # 0 * -inf = 0
    return (-terms.sum(-1)).clamp_min(0.0)


def edt_temperature(logits: torch.Tensor, t0: float, theta: float,
                    base: float = 0.8) -> torch.Tensor:
    """EDT's temperature per row: (B, V) -> (B,) float32 (see the module docstring).

    t0 > 0, theta >= 0, 0 < base <= 1.
    """
    if not (t0 > 0 and theta >= 0 and 0 < base <= 1):
        raise ValueError(f"EDT needs t0 > 0, theta >= 0 and 0 < base <= 1; got t0={t0!r}, "
                         f"theta={theta!r}, base={base!r}")
    h = entropy(logits)
    exponent = theta * math.log(base)  # <= 0
    if exponent == 0.0:
        return torch.full_like(h, float(t0))
    scaled = torch.where(h > 0, exponent / h, torch.full_like(h, float("-inf")))
    return float(t0) * torch.exp(scaled)  # h = 0: exp(-inf) = 0, greedy


def edt_logits(logits: torch.Tensor, t0: float, theta: float, base: float = 0.8) -> torch.Tensor:
    """logits divided by each row's EDT temperature: (B, V) -> (B, V) in logits' dtype."""
    if logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point (B, V) tensor; got {logits.dtype} "
                         f"{tuple(logits.shape)}")
    return apply_temperature(logits, edt_temperature(logits, t0, theta, base))
