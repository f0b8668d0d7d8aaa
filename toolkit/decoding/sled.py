"""SLED: Self Logits Evolution Decoding (docs/methods.md section 2), batched and in closed form.

The reference code builds the (N, K, V) tensor of KL gradients `P[n] - e_i` and takes its cosine
with `D[n] = Z[n] - z` over the vocabulary. Here the cosine comes from per-layer reductions:

    <P - e_i, D> = <P, D> - D_i          |P - e_i|^2 = (1 - P_i)^2 + (|P|^2 - P_i^2)

so the cost is O(N * V) and memory O(N * V), with torch's cosine_similarity semantics (each norm
clamped at eps = 1e-8, so a zero D row gives cosine 0).

Non-finite logits (docs/methods.md section 2: no NaN for rows where some logits are -inf):
- a final logit of -inf marks a token the final layer rules out: D is 0 on it (no contrast), it
  keeps -inf through the evolution, and it only enters the top-K when fewer than K tokens are finite;
- an early logit of -inf is read as the lowest float32 value, i.e. the limit of a very negative
  logit, so D points towards the tokens that layer ruled out;
- a row whose final logits are all -inf comes out as -inf on its top-K and the lower bound elsewhere.
D is formed as Z/2 - z/2 and scaled by its largest entry before any norm, so no finite input can
overflow into inf or NaN. +inf and NaN are not valid logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from toolkit.decoding.checks import check_layer_logits

COSINE_EPS = 1e-8
_LOWEST = torch.finfo(torch.float32).min


@dataclass
class SledResult:
    """Everything `sled_details` computes, for inspection.

    logits: (B, V) evolved logits in the input dtype (lower bound outside the top-K).
    latent: (B, V) float32 latent distribution P_lat, zero outside the top-K; each row sums to 1,
        or to 0 when no layer has a positive cosine with any top-K gradient.
    layer_weights: (B, N) float32 weight s[n] of each early layer (sums to 1 or 0 per row).
    topk_indices: (B, K) long indices of the K most probable final tokens, most probable first.
    """

    logits: torch.Tensor
    latent: torch.Tensor
    layer_weights: torch.Tensor
    topk_indices: torch.Tensor


def check_sled_args(
    final_logits: torch.Tensor,
    early_logits: torch.Tensor,
    evolution_rate: float,
    evolution_scale: int,
    op_T: int,
) -> None:
    """Raise ValueError naming the argument when shapes or hyperparameters are unusable."""
    _, vocab = check_layer_logits(final_logits, early_logits)
    if isinstance(evolution_scale, bool) or not isinstance(evolution_scale, int):
        raise ValueError(f"evolution_scale must be an int; got {evolution_scale!r}")
    if not 1 <= evolution_scale <= vocab:
        raise ValueError(
            f"evolution_scale={evolution_scale} is out of range; it must be between 1 and the "
            f"vocabulary size V={vocab}"
        )
    rate = float(evolution_rate)
    if not (rate > 0 and rate != float("inf")):
        raise ValueError(
            f"evolution_rate={evolution_rate!r} is out of range; it must be a finite number > 0"
        )
    if isinstance(op_T, bool) or not isinstance(op_T, int) or op_T < 1:
        raise ValueError(f"op_T={op_T!r} is out of range; it must be an int >= 1")


def _layer_cosines(probs: torch.Tensor, diff: torch.Tensor, topk: torch.Tensor) -> torch.Tensor:
    """cos(P[b,n] - e_i, D[b,n]) for i in topk[b]: (B, N, V) x2, (B, K) -> (B, N, K).

    `diff` is consumed (scaled in place).
    """
    scale = diff.abs().amax(-1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    diff.div_(scale)
    index = topk.unsqueeze(1).expand(-1, probs.shape[1], -1)
    p_i = probs.gather(-1, index)
    d_i = diff.gather(-1, index)
    dot = torch.einsum("bnv,bnv->bn", probs, diff)
    sq = torch.einsum("bnv,bnv->bn", probs, probs)
    numerator = dot.unsqueeze(-1) - d_i
    rest = (sq.unsqueeze(-1) - p_i * p_i).clamp_min(0.0)
    grad_norm = ((1.0 - p_i).square() + rest).sqrt().clamp_min(COSINE_EPS)
    # |D| = scale * |D / scale| is clamped at eps, so |D / scale| is clamped at eps / scale.
    diff_norm = torch.maximum(torch.linalg.vector_norm(diff, dim=-1), COSINE_EPS / scale[..., 0])
    return numerator / (grad_norm * diff_norm.unsqueeze(-1))


def _latent(cos: torch.Tensor, topk: torch.Tensor, vocab: int):
    """Latent distribution (B, V) and layer weights (B, N) from cosines (B, N, K)."""
    m = cos.clamp_min(0.0).square()
    per_layer = m.sum(-1, keepdim=True)
    m = m / torch.where(per_layer != 0, per_layer, torch.ones_like(per_layer))
    total = per_layer.sum(1, keepdim=True)
    weights = per_layer / torch.where(total != 0, total, torch.ones_like(total))
    latent_k = (weights * m).sum(1)
    latent = torch.zeros(topk.shape[0], vocab, dtype=torch.float32, device=topk.device)
    return latent.scatter_(-1, topk, latent_k), weights[..., 0]


def _evolve(z: torch.Tensor, latent: torch.Tensor, rate: float, op_T: int) -> torch.Tensor:
    """op_T steps of z <- z - rate * (1 - t/op_T) * (softmax(z) - latent); -inf stays -inf."""
    for t in range(op_T):
        probs = torch.softmax(z.clamp_min(_LOWEST), dim=-1)
        z = z - rate * (1.0 - t / op_T) * (probs - latent)
    return z


def sled_details(
    final_logits: torch.Tensor,
    early_logits: torch.Tensor,
    *,
    evolution_rate: float,
    evolution_scale: int,
    evolution_lower_bound: float = -1000.0,
    op_T: int = 1,
) -> SledResult:
    """SLED with its intermediate results: final (B, V), early (B, N, V) -> SledResult.

    Every row has its own top-K (K = evolution_scale). Float32 inside; `logits` comes back in
    final_logits' dtype. See the module docstring for the handling of -inf logits.
    """
    check_sled_args(final_logits, early_logits, evolution_rate, evolution_scale, op_T)
    z = final_logits.float()
    z_low = z.clamp_min(_LOWEST)
    topk = torch.softmax(z_low, dim=-1).topk(evolution_scale, dim=-1).indices
    early = early_logits.float().clamp_min(_LOWEST)
    probs = torch.softmax(early, dim=-1)
    diff = early.mul_(0.5).sub_(z_low.mul(0.5).unsqueeze(1))
    diff.masked_fill_(~(z > float("-inf")).unsqueeze(1), 0.0)
    cos = _layer_cosines(probs, diff, topk)
    latent, weights = _latent(cos, topk, z.shape[-1])
    evolved = _evolve(z, latent, float(evolution_rate), op_T)
    out = torch.full_like(z, float(evolution_lower_bound))
    out.scatter_(-1, topk, evolved.gather(-1, topk))
    return SledResult(out.to(final_logits.dtype), latent, weights, topk)


def sled_evolve(
    final_logits: torch.Tensor,
    early_logits: torch.Tensor,
    *,
    evolution_rate: float,
    evolution_scale: int,
    evolution_lower_bound: float = -1000.0,
    op_T: int = 1,
) -> torch.Tensor:
    """Evolved logits (B, V) from final logits (B, V) and early-layer logits (B, N, V).

    docs/methods.md section 2: the top-K tokens get z - rate * (softmax(z) - P_lat) (op_T steps with a
    decaying rate); every other token gets `evolution_lower_bound`. Returns final_logits' dtype.
    """
    return sled_details(
        final_logits,
        early_logits,
        evolution_rate=evolution_rate,
        evolution_scale=evolution_scale,
        evolution_lower_bound=evolution_lower_bound,
        op_T=op_T,
    ).logits


def sled_scores(
    final_logits: torch.Tensor,
    early_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    evolution_rate: float,
    evolution_scale: int,
    evolution_lower_bound: float = -1000.0,
    op_T: int = 1,
    log_softmax: bool = True,
) -> torch.Tensor:
    """Teacher-forced SLED values: final (M, V), early (M, N, V), targets (M,) -> (M,) float32.

    Every position is evolved on its own; the value at the target is the evolved logit
    (TruthfulQA protocol) or its log_softmax (FACTOR protocol).
    """
    evolved = sled_evolve(final_logits.float(), early_logits.float(),
                          evolution_rate=evolution_rate, evolution_scale=evolution_scale,
                          evolution_lower_bound=evolution_lower_bound, op_T=op_T)
    if log_softmax:
        evolved = evolved.log_softmax(-1)
    return evolved.gather(-1, targets[:, None])[:, 0]
