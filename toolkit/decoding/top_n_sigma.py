"""Top-n-sigma filtering (docs/methods.md section 4).

Per row, over the finite logits only: M = max, sigma = population standard deviation (float32);
token i is kept iff logit_i >= M - n * sigma, the others become -inf. A row with n <= 0 (or NaN)
or fewer than two finite logits is returned unchanged. The kept set does not depend on
temperature. The statistics are computed on the row divided by a power of two (exact), so the
comparison is the plain float32 one while huge or tiny logits cannot overflow or underflow the
variance. Rows that are all finite with moderate magnitudes (every real model's logits) take a
shorter path that computes the same numbers.
"""

from __future__ import annotations

import torch


def _per_row_n(n, batch: int, device: torch.device) -> torch.Tensor:
    if isinstance(n, torch.Tensor):
        if n.dim() == 0:
            n = n.reshape(1)
        if n.dim() != 1 or n.shape[0] not in (1, batch):
            raise ValueError(
                f"n must be a float or a tensor of shape (B,)=({batch},); "
                f"got shape {tuple(n.shape)}"
            )
        return n.to(device=device, dtype=torch.float32).unsqueeze(-1)
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise ValueError(f"n must be a float or a tensor of shape (B,); got {n!r}")
    return torch.full((1, 1), float(n), dtype=torch.float32, device=device)


def _power_of_two_scale(values: torch.Tensor) -> torch.Tensor:
    """2**e with max |values| in [2**(e-1), 2**e) per row (1 for a zero row): dividing by a power
    of two is exact, and brings the row's largest value into [0.5, 1)."""
    biggest = values.abs().amax(-1, keepdim=True)
    _, exponent = torch.frexp(biggest)
    return torch.ldexp(torch.ones_like(biggest), exponent)


_FAST_RANGE = (2.0**-20, 2.0**20)


def _fast_threshold(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor | None:
    """max - n * sigma per row (B, 1), or None unless every row is finite with its largest
    |logit| in [2**-20, 2**20] and V >= 2. There the plain float32 formula is what the rescaled
    one computes (scaling by a power of two commutes with rounding; no square under- or
    overflows), in fewer passes."""
    top, bottom = x.amax(-1, keepdim=True), x.amin(-1, keepdim=True)
    biggest = torch.maximum(top.abs(), bottom.abs())
    low, high = _FAST_RANGE
    if x.shape[-1] < 2 or not bool(((biggest >= low) & (biggest <= high)).all()):
        return None
    mean = x.mean(-1, keepdim=True)
    sigma = (x - mean).square_().mean(-1, keepdim=True).sqrt_()
    return torch.where(n > 0, top - n * sigma, float("-inf"))


def top_n_sigma(logits: torch.Tensor, n) -> torch.Tensor:
    """Keep logits >= max - n * sigma per row: (B, V), n float or (B,) -> (B, V) same dtype."""
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V); got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor; got {logits.dtype}")
    n = _per_row_n(n, logits.shape[0], logits.device)
    x = logits.float()
    threshold = _fast_threshold(x, n)
    if threshold is not None:
        return torch.where(x >= threshold, logits, float("-inf"))
    finite = torch.isfinite(x)
    count = finite.sum(-1, keepdim=True)
    active = (n > 0) & (count >= 2)
    if not bool(active.any()):  # e.g. every row one-hot after a temperature of 0
        return logits
    x = torch.where(finite, x, 0.0)
    x = x.div_(_power_of_two_scale(x))
    mean = x.sum(-1, keepdim=True) / count.clamp_min(1)
    spread = torch.where(finite, x - mean, 0.0)
    sigma = (spread.square_().sum(-1, keepdim=True) / count.clamp_min(1)).sqrt()
    top = torch.where(finite, x, float("-inf")).amax(-1, keepdim=True)
    keep = finite & (x >= top - n * sigma)
    return logits.masked_fill(active & ~keep, float("-inf"))
