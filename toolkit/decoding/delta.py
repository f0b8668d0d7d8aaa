"""DeLTa: decoding by the logit trajectory across layers (He et al., 2025; docs/methods.md
section 3c).

The early rows (B, N, V) are read as the layers directly below the final one, one layer apart:
early row n sits at x = n - N, the final logits at x = 0. For every row and token an ordinary
least-squares line is fitted to the N + 1 points (x, logit) and read at the virtual layer
x = `virtual_offset` (1: one layer above the final one). The fit is linear in the logits, so the
prediction is one weighted sum over the layers:

    pred = sum_k c_k y_k,   c_k = 1/K + (x* - mean x) (x_k - mean x) / (K var x),   K = N + 1

Then the relative-top filter of the reference code (transformers' DoLa filter applied to the
prediction itself): with lp = log_softmax(pred), tokens with lp >= max lp + log(relative_top)
keep lp, the others get `filtered_value` (-inf when generating); relative_top = 0 keeps every
token.

Non-finite logits: a token the final layer rules out (-inf) stays -inf; an early -inf is read as
-1e30 (a very low logit), like the other layer methods, so no NaN comes out for any finite row.
+inf and NaN are not valid logits.
"""

from __future__ import annotations

import math

import torch

from toolkit.decoding.layer_logits import check_layer_logits

_FLOOR = 1e30


def trajectory_weights(layers: int, virtual_offset: float) -> torch.Tensor:
    """c (N + 1,) float64: the prediction at x = virtual_offset of the least-squares line through
    points at x = -N .. 0 is sum_k c_k y_k (module docstring)."""
    if layers < 1:
        raise ValueError("DeLTa needs at least one early layer (N >= 1)")
    x = torch.arange(-layers, 1, dtype=torch.float64)
    dx = x - x.mean()
    count = layers + 1
    return 1.0 / count + (virtual_offset - x.mean()) * dx / (dx * dx).sum()


def delta_extrapolate(final_logits: torch.Tensor, early_logits: torch.Tensor, *,
                      virtual_offset: float = 1.0) -> torch.Tensor:
    """The trajectory's logits at the virtual layer: (B, V), (B, N, V) -> (B, V) float32."""
    check_layer_logits(final_logits, early_logits)
    weights = trajectory_weights(early_logits.shape[1], virtual_offset).float()
    weights = weights.to(final_logits.device)
    early = early_logits.float().clamp(-_FLOOR, _FLOOR)
    final = final_logits.float()
    pred = torch.einsum("n,bnv->bv", weights[:-1], early)
    pred = pred + weights[-1] * final.clamp(-_FLOOR, _FLOOR)
    return pred.masked_fill(final == float("-inf"), float("-inf"))


def delta_logits(final_logits: torch.Tensor, early_logits: torch.Tensor, *,
                 virtual_offset: float = 1.0, relative_top: float = 0.1,
                 filtered_value: float = float("-inf")) -> torch.Tensor:
    """DeLTa's log-probabilities with the relative-top filter: (B, V), (B, N, V) -> (B, V) in
    final_logits' dtype (module docstring). relative_top in [0, 1]."""
    if not 0.0 <= float(relative_top) <= 1.0:
        raise ValueError(f"relative_top={relative_top!r} is out of range; it must be in [0, 1]")
    pred = delta_extrapolate(final_logits, early_logits, virtual_offset=virtual_offset)
    log_p = torch.log_softmax(pred, dim=-1)
    log_p = log_p.masked_fill(torch.isnan(log_p), float("-inf"))  # a row with every token -inf
    if relative_top > 0:
        threshold = log_p.amax(-1, keepdim=True) + math.log(relative_top)
        dropped = (log_p < threshold) & (pred != float("-inf"))
        log_p = log_p.masked_fill(dropped, filtered_value)
    return log_p.to(final_logits.dtype)
