"""The literal formulation of SLED (docs/methods.md section 2), kept for checking and benchmarking only.

`sled_evolve_naive` builds the (N, K, V) gradient tensor `P[n] - e_i` row by row and takes
torch.nn.functional.cosine_similarity with D = Z - z over the vocabulary, as the reference code
does. It is written independently of `toolkit.decoding.sled` (no shared helpers) so the tests can
compare the two, and it costs O(N * K * V) memory: use `sled_evolve` for real work.
Finite inputs only (the reference code has no -inf handling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _naive_row(z, early, rate, scale, lower_bound, op_T):
    vocab, dtype = z.shape[-1], z.dtype
    p = torch.softmax(z, dim=-1)
    topk = torch.topk(p, scale).indices
    diff = early - z
    probs = torch.softmax(early, dim=-1)
    grads = probs.unsqueeze(1) - F.one_hot(topk, vocab).to(dtype).unsqueeze(0)
    cos = F.cosine_similarity(grads, diff.unsqueeze(1), dim=-1)
    m = torch.relu(cos) ** 2
    sums = m.sum(1)
    for n in range(m.shape[0]):
        if sums[n] != 0:
            m[n] = m[n] / sums[n]
    weights = sums / sums.sum() if sums.sum() != 0 else sums
    latent = torch.zeros(vocab, dtype=dtype)
    latent[topk] = (weights.unsqueeze(1) * m).sum(0)
    for t in range(op_T):
        z = z - rate * (1 - t / op_T) * (torch.softmax(z, dim=-1) - latent)
    out = torch.full((vocab,), float(lower_bound), dtype=dtype)
    out[topk] = z[topk]
    return out


def sled_evolve_naive(
    final_logits: torch.Tensor,
    early_logits: torch.Tensor,
    *,
    evolution_rate: float,
    evolution_scale: int,
    evolution_lower_bound: float = -1000.0,
    op_T: int = 1,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """SLED as methods.md writes it: final (B, V), early (B, N, V) -> (B, V) in `dtype` (float32 as
    the reference code; float64 for a reference free of float32 rounding), CPU, row by row."""
    rows = [
        _naive_row(
            final_logits[b].cpu().to(dtype),
            early_logits[b].cpu().to(dtype),
            evolution_rate,
            evolution_scale,
            evolution_lower_bound,
            op_T,
        )
        for b in range(final_logits.shape[0])
    ]
    return torch.stack(rows)
