"""Contrastive decoding with an early layer as the amateur (Li et al., 2023, with the amateur
taken from the same model's early-exit logits, as in DoLa's static-layer variant).

Per row, with the final ("expert") logits z and the amateur layer's logits a:
keep the plausible tokens, log p_z(v) >= max log p_z + log(alpha) (the most probable token
always is); they get log p_z(v) - log p_a(v), all others `filtered_value` (-inf for
generation). -inf logits are read as the lowest float32 value, so no row yields NaN; a kept
token that the amateur rules out gets the largest finite value of the output dtype.
"""

from __future__ import annotations

import math

import torch

from toolkit.decoding.layer_logits import check_layer_logits

_LOWEST = torch.finfo(torch.float32).min


def contrastive_logits(
    final_logits: torch.Tensor, amateur_logits: torch.Tensor, *, alpha: float = 0.1,
    filtered_value: float = float("-inf"),
) -> torch.Tensor:
    """Contrastive scores (B, V) in final_logits' dtype from expert (B, V) and amateur (B, V)
    logits; tokens outside the alpha-plausible set get `filtered_value`."""
    check_layer_logits(final_logits, amateur_logits.unsqueeze(1))
    if not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"alpha={alpha!r} is out of range; it must be in (0, 1]")
    log_p = torch.log_softmax(final_logits.float().clamp_min(_LOWEST), dim=-1)
    log_q = torch.log_softmax(amateur_logits.float().clamp_min(_LOWEST), dim=-1)
    plausible = log_p >= log_p.amax(-1, keepdim=True) + math.log(alpha)
    contrast = (log_p - log_q).clamp_max(torch.finfo(final_logits.dtype).max)
    out = torch.where(plausible, contrast, torch.full_like(contrast, filtered_value))
    return out.to(final_logits.dtype)


def contrastive_scores(
    final_logits: torch.Tensor, amateur_logits: torch.Tensor, targets: torch.Tensor, *,
    alpha: float = 0.1, filtered_value: float = -1000.0,
) -> torch.Tensor:
    """Teacher-forced values (M,) at `targets` (M,) from (M, V) expert and amateur logits."""
    out = contrastive_logits(final_logits.float(), amateur_logits.float(), alpha=alpha,
                             filtered_value=filtered_value)
    return out.gather(-1, targets[:, None])[:, 0]
