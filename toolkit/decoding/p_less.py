"""p-less sampling (Tan, Wu and Howard, 2025; docs/methods.md section 4c).

Per row: p = softmax(logits), the distribution as it stands at this point of the composition
order (after the temperature), and L = sum_i p_i ** 2, the probability that two independent
draws agree (the collision probability). Token i is kept iff p_i >= L; the others become -inf.
L <= max p, so the most probable token is always kept; the tokens tied with it are kept too, so
float rounding cannot drop a whole uniform row. There is no hyperparameter. Computed in float32;
a -inf logit (probability 0) is never kept.
"""

from __future__ import annotations

import torch


def p_less_threshold(logits: torch.Tensor) -> torch.Tensor:
    """L = sum_i softmax(logits)_i ** 2 per row: (B, V) -> (B,) float32."""
    probs = torch.softmax(logits.float(), dim=-1)
    return (probs * probs).sum(-1)


def p_less_filter(logits: torch.Tensor) -> torch.Tensor:
    """Keep the tokens at least as probable as the row's collision probability: (B, V) -> (B, V)
    in the input dtype, the others -inf."""
    if logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point (B, V) tensor; got {logits.dtype} "
                         f"{tuple(logits.shape)}")
    probs = torch.softmax(logits.float(), dim=-1)
    threshold = (probs * probs).sum(-1, keepdim=True)
    keep = (probs >= threshold) | (probs == probs.amax(-1, keepdim=True))
    keep &= probs > 0
    return logits.masked_fill(~keep, float("-inf"))
