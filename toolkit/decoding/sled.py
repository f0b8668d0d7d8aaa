"""SLED: Self Logits Evolution Decoding (docs/methods.md section 2), batched and in closed form.

The reference code builds the (N, K, V) tensor of KL gradients `P[n] - e_i` and takes its cosine
with `D[n] = Z[n] - z` over the vocabulary. Here the cosine comes from four per-layer sums over
the vocabulary and (N, K) gathered terms, so the cost is O(N * V) and no (N, K, V) tensor exists:

    <P - e_i, D> = sum_{j != i} p_j D_j - (1 - p_i) D_i
    |P - e_i|^2  = sum_{j != i} p_j^2 + (1 - p_i)^2

with torch's cosine_similarity semantics (each norm clamped at eps = 1e-8, so a zero D row gives
cosine 0).

Precision. Written as `<P, D> - D_i` and `|P|^2 - p_i^2`, these terms cancel catastrophically
when a layer is nearly one-hot on a top-K token (p_i = 1 - 1e-7 leaves a handful of float32
bits). Per layer the sums are therefore taken with the layer's most probable top-K token `a`
left out (its entry of P set to 0 before summing): R = sum_{j != a} p_j (= 1 - p_a, formed
without subtracting), Q = sum_{j != a} p_j^2, W = sum_{j != a} p_j D_j and |D|. The (N, K) terms
are then put together in float64, never subtracting two near-equal sums:

    i == a:  <P - e_a, D> = W - R D_a                 |P - e_a|^2 = Q + R^2
    i != a:  <P - e_i, D> = W + p_a D_a - D_i         |P - e_i|^2 = (1 - p_i)^2 + Q + p_a^2 - p_i^2

(for i != a, p_i <= p_a, so p_i <= 1/2 and 1 - p_i is exact enough).

Speed. On a CPU the (B, N, V) work runs in C (`toolkit.decoding.native`): per layer row one
exponential, one more pass for all four sums, then its K cosines. Where those kernels do not
run (another device, no C compiler, `runtime.compile`) it runs on torch ops one block of rows
at a time (`toolkit.decoding.blocks`), so the block's softmax, differences and sums stay in
cache, in buffers kept between steps on CPU (`toolkit.decoding.scratch`).
The sums are first computed on the inputs as they are; only the batch rows whose sums are not
finite (an early or final logit of -inf, or differences beyond ~1e19) are recomputed the
careful way, with torch ops:

Non-finite logits (docs/methods.md section 2: no NaN for rows where some logits are -inf):
- a final logit of -inf marks a token the final layer rules out: D is 0 on it (no contrast), it
  keeps -inf through the evolution, and it only enters the top-K when fewer than K tokens are finite;
- an early logit of -inf is read as the lowest float32 value, i.e. the limit of a very negative
  logit, so D points towards the tokens that layer ruled out;
- a row whose final logits are all -inf comes out as -inf on its top-K and the lower bound elsewhere.
D is formed as Z/2 - z/2 and, in the careful pass, divided by a power of two near its largest
entry before any norm (exact), so no finite input can overflow into inf or NaN. +inf and NaN
are not valid logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from toolkit.decoding import native
from toolkit.decoding.blocks import batch_blocks, kernel
from toolkit.decoding.layer_logits import check_layer_logits
from toolkit.decoding.scratch import scratch

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
    evolved: (B, V) float32 evolved logits over the whole vocabulary, before the lower bound
        replaces those outside the top-K (their log_softmax is a distribution over every token).
    """

    logits: torch.Tensor
    latent: torch.Tensor
    layer_weights: torch.Tensor
    topk_indices: torch.Tensor
    evolved: torch.Tensor


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


def _half_differences(early, z_low, z_finite, careful: bool):
    """D/2 = Z/2 - z/2 (b, N, V) and the power of two it was divided by (b, N): 1, or when
    `careful` 2**(e-1) with the largest |D/2| in [2**(e-1), 2**e) (2**e may overflow), and D
    set to 0 where the final logit is -inf (`z_finite` false).

    `early` must be a tensor this module owns when `careful` (it is overwritten).
    """
    half = z_low.mul(-0.5).unsqueeze(1)
    if not careful:
        out = scratch("sled.diff", early.shape, early.dtype, early.device)
        return torch.add(half, early, alpha=0.5, out=out), torch.ones_like(early[..., 0])
    diff = early.mul_(0.5).add_(half)
    diff.masked_fill_(~z_finite.unsqueeze(1), 0.0)
    _, exponent = torch.frexp(diff.abs().amax(-1))  # largest |D/2| in [2**(e-1), 2**e)
    scale = torch.ldexp(torch.ones_like(exponent, dtype=diff.dtype), exponent - 1)
    return diff.div_(scale.unsqueeze(-1)), scale


class _Terms(NamedTuple):
    """The per-layer sums and gathered top-K terms of rows of SLED (see the module docstring).

    sums (b, N, 4) float64: R, Q = |P'|^2, W = <P', D/2> and |D/2|^2, with P' = P without its
    entry at `a`; p_k, d_k (b, N, K): P and D/2 at the top-K; top (b, N, 1): the index in K of
    `a`; scale (b, N): the power of two D/2 was divided by (1 unless computed carefully).
    """

    sums: torch.Tensor
    p_k: torch.Tensor
    d_k: torch.Tensor
    top: torch.Tensor
    scale: torch.Tensor


def _block_terms(early, z_low, z_finite, topk, careful: bool = False) -> _Terms:
    """`_Terms` of one block of rows with torch ops (the C kernels' fallback)."""
    early = early.float()
    if careful:
        owned = scratch("sled.early", early.shape, early.dtype, early.device)
        early = torch.clamp_min(early, _LOWEST, out=owned)
    probs = torch.ops.aten._softmax.out(  # torch.softmax, into a kept buffer
        early, -1, False, out=scratch("sled.probs", early.shape, early.dtype, early.device))
    diff, scale = _half_differences(early, z_low, z_finite, careful)
    index = topk.unsqueeze(1).expand(-1, probs.shape[1], -1)
    p_k, d_k = probs.gather(-1, index), diff.gather(-1, index)
    top = p_k.argmax(-1, keepdim=True)
    probs.scatter_(-1, index.gather(-1, top), 0.0)
    product = torch.mul(probs, diff, out=scratch("sled.product", early.shape, early.dtype,
                                                 early.device))
    norms = torch.stack((torch.linalg.vector_norm(probs, dim=-1),
                         torch.linalg.vector_norm(diff, dim=-1)), -1).double().square()
    sums = torch.stack((probs.sum(-1).double(), norms[..., 0], product.sum(-1).double(),
                        norms[..., 1]), -1)
    return _Terms(sums, p_k, d_k, top, scale)


def _cosines(terms: _Terms) -> torch.Tensor:
    """cos(P - e_i, D) (b, N, K) float64 from `_Terms`, without cancelling sums."""
    rest, q_sq, dot, d_sq = (s.unsqueeze(-1) for s in terms.sums.unbind(-1))
    p_k, d_k, top = terms.p_k.double(), terms.d_k.double(), terms.top
    p_a, d_a = p_k.gather(-1, top), d_k.gather(-1, top)
    is_a = torch.arange(p_k.shape[-1], device=top.device) == top
    numerator = torch.where(is_a, dot - rest * d_a, dot + p_a * d_a - d_k)
    others = (q_sq + p_a.square() - p_k.square()).clamp_min(0.0)
    grad_sq = torch.where(is_a, q_sq + rest.square(), (1.0 - p_k).square() + others)
    grad_norm = grad_sq.sqrt().clamp_min(COSINE_EPS)
    # |D| = 2 * scale * |D/2 / scale| is clamped at eps, so |D/2 / scale| at eps / (2 * scale).
    diff_norm = torch.maximum(d_sq.sqrt(), COSINE_EPS / (2.0 * terms.scale.double().unsqueeze(-1)))
    return numerator / (grad_norm * diff_norm)




def _block_cosines(early, z_low, topk) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosines (b, N, K), sums (b, N, 4)) of one block of rows with torch ops: the unit that
    `runtime.compile` compiles (on a GPU the whole batch, in a few fused kernels)."""
    terms = _block_terms(early, z_low, None, topk)
    return _cosines(terms), terms.sums


def _layer_cosines(early, z, z_low, topk) -> torch.Tensor:
    """cos(P[b,n] - e_i, D[b,n]) for i in topk[b]: float64 (B, N, K), on the C kernels, else on
    torch ops one block of rows at a time (`toolkit.decoding.blocks`). Batch rows whose sums
    are not finite are computed again the careful way, a block of them at a time."""
    if native.runs_on(early):
        cos, sums = native.sled_cosines(early, z_low, topk)
    else:
        parts = [kernel(_block_cosines)(early[rows], z_low[rows], topk[rows])
                 for rows in batch_blocks(early.shape[0], early)]
        cos, sums = (torch.cat(field) for field in zip(*parts, strict=True))
    if not bool(torch.isfinite(sums).all()):
        bad = (~torch.isfinite(sums)).flatten(1).any(-1).nonzero().flatten()
        for part in batch_blocks(len(bad), early):
            rows = bad[part]
            cos[rows] = _cosines(_block_terms(early[rows], z_low[rows], z[rows] > float("-inf"),
                                              topk[rows], careful=True))
    return cos


def _latent_top(cos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent distribution on the top-K (B, K) and layer weights (B, N), float32, from cosines
    (B, N, K)."""
    m = cos.clamp_min(0.0).square()
    per_layer = m.sum(-1)
    total = per_layer.sum(1, keepdim=True)
    total = torch.where(total != 0, total, 1.0)
    # sum_n s[n] * m[n] / S[n] with s[n] = S[n] / total is sum_n m[n] / total (m[n] = 0 where
    # S[n] = 0), and s = S when total = 0
    return (m.sum(1) / total).float(), (per_layer / total).float()


def _latent(cos: torch.Tensor, topk: torch.Tensor, vocab: int):
    """Latent distribution (B, V) and layer weights (B, N), float32, from cosines (B, N, K)."""
    latent_k, weights = _latent_top(cos)
    latent = torch.zeros(topk.shape[0], vocab, dtype=torch.float32, device=topk.device)
    return latent.scatter_(-1, topk, latent_k), weights


def _evolve(z: torch.Tensor, probs: torch.Tensor, latent: torch.Tensor, rate: float,
            op_T: int) -> torch.Tensor:
    """op_T steps of z <- z - rate * (1 - t/op_T) * (softmax(z) - latent); -inf stays -inf.
    `probs` is softmax(z) with -inf read as the lowest float (overwritten). With op_T = 1 no
    softmax is recomputed, so z, probs and latent may be their top-K entries alone (`sled_step`)."""
    for t in range(op_T):
        if t:
            probs = torch.softmax(z.clamp_min(_LOWEST), dim=-1)
        z = torch.add(z, probs.sub_(latent), alpha=-rate * (1.0 - t / op_T))
    return z


def _top_and_cosines(final_logits, early_logits, k: int):
    """z (B, V) float32, softmax(z) (B, V) with -inf read as the lowest float, the top-K
    indices (B, K) of it and the layers' cosines (B, N, K) float64."""
    z = final_logits.float()
    z_low = z.clamp_min(_LOWEST)
    probs = torch.softmax(z_low, dim=-1)
    topk = probs.topk(k, dim=-1).indices
    return z, probs, topk, _layer_cosines(early_logits, z, z_low, topk)


def sled_step(
    final_logits: torch.Tensor,
    early_logits: torch.Tensor,
    *,
    evolution_rate: float,
    evolution_scale: int,
    evolution_lower_bound: float = -1000.0,
    op_T: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sled_details`' logits (B, V) and layer weights (B, N): decoding's per-step call.

    With op_T = 1 the evolution is computed on the top-K only, so no latent or evolved tensor
    of the whole vocabulary is made (three fewer passes over (B, V)); the values are the same
    arithmetic on the same numbers.
    """
    if op_T != 1:
        result = sled_details(final_logits, early_logits, evolution_rate=evolution_rate,
                              evolution_scale=evolution_scale,
                              evolution_lower_bound=evolution_lower_bound, op_T=op_T)
        return result.logits, result.layer_weights
    check_sled_args(final_logits, early_logits, evolution_rate, evolution_scale, op_T)
    z, probs, topk, cos = _top_and_cosines(final_logits, early_logits, evolution_scale)
    latent_k, weights = _latent_top(cos)
    evolved_k = _evolve(z.gather(-1, topk), probs.gather(-1, topk), latent_k,
                        float(evolution_rate), 1)
    out = torch.full_like(z, float(evolution_lower_bound)).scatter_(-1, topk, evolved_k)
    return out.to(final_logits.dtype), weights


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
    z, probs, topk, cos = _top_and_cosines(final_logits, early_logits, evolution_scale)
    latent, weights = _latent(cos, topk, z.shape[-1])
    evolved = _evolve(z, probs, latent, float(evolution_rate), op_T)
    out = torch.full_like(z, float(evolution_lower_bound))
    out.scatter_(-1, topk, evolved.gather(-1, topk))
    return SledResult(out.to(final_logits.dtype), latent, weights, topk, evolved)


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
    return sled_step(
        final_logits,
        early_logits,
        evolution_rate=evolution_rate,
        evolution_scale=evolution_scale,
        evolution_lower_bound=evolution_lower_bound,
        op_T=op_T,
    )[0]
