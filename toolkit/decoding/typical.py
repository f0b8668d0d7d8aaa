"""Locally typical sampling (Meister et al., 2023; docs/methods.md section 4b).

Per row: p = softmax(logits), H = its entropy (0 log 0 = 0). A token's distance from typical
is d_i = |-log p_i - H|. Tokens are ranked by d (closest first) and the smallest prefix whose
probability reaches `mass` is kept; every token as close as the last kept one is kept too (ties
are kept together), at least one token always. The others become -inf. A token of probability
0 (a -inf logit) is never kept; mass >= 1 returns the row unchanged. Computed in float32.
"""

from __future__ import annotations

import torch


def typical_filter(logits: torch.Tensor, mass: float) -> torch.Tensor:
    """Keep the locally typical tokens: (B, V), 0 < mass -> (B, V) in the input dtype."""
    if logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point (B, V) tensor; got {logits.dtype} "
                         f"{tuple(logits.shape)}")
    if mass >= 1.0:
        return logits
    log_p = torch.log_softmax(logits.float(), dim=-1)
    p = log_p.exp()
    entropy = -(p * log_p).nan_to_num(nan=0.0).sum(-1, keepdim=True)
    distance = (-log_p - entropy).abs()
    ranked, order = distance.sort(dim=-1, stable=True)
    reached = p.gather(-1, order).cumsum(-1) < mass
    last = reached.sum(-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    keep = distance <= ranked.gather(-1, last)
    keep |= distance == ranked[:, :1]
    return logits.masked_fill(~keep | ~torch.isfinite(log_p), float("-inf"))
