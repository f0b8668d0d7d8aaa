"""DoLa: contrast the final layer with one premature layer per row (docs/methods.md section 3).

Layer choice: for each candidate j, jsd_j = 0.5 * (KL(M || P_N) + KL(M || P_j)).mean over the
vocabulary with M = (P_N + P_j) / 2, exactly what the reference code computes with F.kl_div; the
largest jsd_j wins (first one on ties). Unlike the reference, which picks one layer for the whole
batch, every row picks its own.

Filter: tokens with log p_N >= max log p_N + log(relative_top) are kept (the most probable token
always is); they get log p_N - log p_j, all others -inf.

Non-finite logits: -inf is read as the lowest float32 value (as in SLED), so a row never yields
NaN; a token masked in the final logits (-inf) stays -inf, also in a row where every token is
masked; a kept token that the premature layer rules out gets the largest finite value of the
output dtype. +inf and NaN are not valid logits.
"""

from __future__ import annotations

import math

import torch

from toolkit.decoding import native
from toolkit.decoding.blocks import batch_blocks, kernel
from toolkit.decoding.layer_logits import check_layer_logits
from toolkit.decoding.scratch import scratch

_LOWEST = torch.finfo(torch.float32).min


def _check(final_logits: torch.Tensor, early_logits: torch.Tensor, relative_top: float) -> None:
    check_layer_logits(final_logits, early_logits)
    if not 0.0 < float(relative_top) <= 1.0:
        raise ValueError(f"relative_top={relative_top!r} is out of range; it must be in (0, 1]")


def _kl_from(mix: torch.Tensor, log_mix: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(M || Q) per token as F.kl_div(log Q, M) computes it, with 0 where M is 0."""
    return torch.where(mix > 0, mix * (log_mix - log_q), torch.zeros_like(mix))


def _clamped_divergences(final: torch.Tensor, early: torch.Tensor) -> torch.Tensor:
    """JSD as the reference computes it, -inf read as the lowest float: (b, V), (b, N, V) -> (b, N)."""
    final = final.float().clamp_min(_LOWEST).unsqueeze(1)
    early = early.float().clamp_min(_LOWEST)
    mix = 0.5 * (torch.softmax(final, dim=-1) + torch.softmax(early, dim=-1))
    log_mix = mix.log()
    kl_final = _kl_from(mix, log_mix, torch.log_softmax(final, dim=-1)).mean(-1)
    kl_early = _kl_from(mix, log_mix, torch.log_softmax(early, dim=-1)).mean(-1)
    return 0.5 * (kl_final + kl_early)


def _block_divergences(log_final: torch.Tensor, final_probs: torch.Tensor,
                       early: torch.Tensor) -> torch.Tensor:
    """The same JSD with torch ops, for finite early logits: (b, V) x2, (b, N, V) -> (b, N).

    sum_v M (log M - log P_N) + M (log M - log P_j) = sum_v M (2 log M - log P_N - (Z_j - m_j))
    + log_s_j sum_v M, with log P_j = (Z_j - m_j) - log_s_j as log_softmax forms it: m_j = max
    Z_j, log_s_j = -log(max P_j). Where M is 0 its log is clamped to a finite value, so the term
    is 0 as in F.kl_div. Non-finite early logits give a non-finite result (the caller then uses
    `_clamped_divergences`).
    """
    early = early.float()
    shape, dtype, device = early.shape, early.dtype, early.device
    probs = torch.ops.aten._softmax.out(  # torch.softmax, into a kept buffer
        early, -1, False, out=scratch("dola.probs", shape, dtype, device))
    top = early.amax(-1, keepdim=True)
    shifted = torch.sub(early, top, out=scratch("dola.shifted", shape, dtype, device))
    log_s = -probs.amax(-1).log()
    mix = probs.lerp_(final_probs.unsqueeze(1), 0.5)
    # log M clamped (the log of the smallest positive float is about -103), then
    # 2 log M - (Z - m) - log P_N
    terms = torch.log(mix, out=scratch("dola.terms", shape, dtype, device)).clamp_min_(-1e4)
    terms.mul_(2.0).sub_(shifted).sub_(log_final.unsqueeze(1))
    total = torch.mul(mix, terms, out=terms).sum(-1) + log_s * mix.sum(-1)
    return total / (2.0 * early.shape[-1])


def _log_final(final_logits: torch.Tensor) -> torch.Tensor:
    """log P_N (B, V) float32 of the final logits, -inf read as the lowest float."""
    return torch.log_softmax(final_logits.float().clamp_min(_LOWEST), dim=-1)


def _divergences(final_logits: torch.Tensor, early_logits: torch.Tensor,
                 log_final: torch.Tensor) -> torch.Tensor:
    """`layer_divergences` with the final layer's log-probabilities (B, V) already computed."""
    final_probs = log_final.exp()
    if native.runs_on(early_logits):
        jsd = native.dola_divergences(early_logits, log_final, final_probs).float()
    else:
        jsd = torch.cat([
            kernel(_block_divergences)(log_final[rows], final_probs[rows], early_logits[rows])
            for rows in batch_blocks(early_logits.shape[0], early_logits)])
    if not bool(torch.isfinite(jsd).all()):
        bad = (~torch.isfinite(jsd).all(-1)).nonzero().flatten()
        for part in batch_blocks(len(bad), early_logits):
            rows = bad[part]
            jsd[rows] = _clamped_divergences(final_logits[rows], early_logits[rows])
    return jsd


def layer_divergences(final_logits: torch.Tensor, early_logits: torch.Tensor) -> torch.Tensor:
    """The reference's Jensen-Shannon score of each candidate layer: (B, V), (B, N, V) -> (B, N).

    On a CPU in C (`toolkit.decoding.native`), else with torch ops one block of rows at a time
    (`toolkit.decoding.blocks`); batch rows with non-finite logits are computed the reference's
    way with -inf read as the lowest float.
    """
    return _divergences(final_logits, early_logits, _log_final(final_logits))


def dola_contrast(
    final_logits: torch.Tensor, early_logits: torch.Tensor, *, relative_top: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """DoLa logits (B, V) in final_logits' dtype and the chosen layer (B,) (long index into N).

    final_logits (B, V) are the mature layer's logits, early_logits (B, N, V) the candidates'.
    """
    _check(final_logits, early_logits, relative_top)
    log_final = _log_final(final_logits)
    chosen = _divergences(final_logits, early_logits, log_final).argmax(-1)
    threshold = log_final.amax(-1, keepdim=True) + math.log(relative_top)
    if native.runs_on(early_logits):
        out = native.dola_finish(early_logits, final_logits, log_final, chosen, threshold)
        if final_logits.dtype != torch.float32:  # the kernel caps at float32's largest value
            out.clamp_max_(torch.finfo(final_logits.dtype).max)
        return out.to(final_logits.dtype), chosen
    premature = early_logits[torch.arange(early_logits.shape[0], device=chosen.device), chosen]
    log_premature = torch.log_softmax(premature.float().clamp_min_(_LOWEST), dim=-1)
    out = log_premature.neg_().add_(log_final).clamp_max_(torch.finfo(final_logits.dtype).max)
    out.masked_fill_(log_final < threshold, float("-inf"))  # kept: log p_N >= threshold
    out.masked_fill_(final_logits == float("-inf"), float("-inf"))
    return out.to(final_logits.dtype), chosen


def dola_values(
    final_logits: torch.Tensor, early_logits: torch.Tensor, *, relative_top: float = 0.1,
    filtered_value: float = float("-inf"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """DoLa contrast (B, V) and the chosen layer (B,), for generation and for scoring.

    relative_top in (0, 1] filters as `dola_contrast` does, the filtered tokens getting
    `filtered_value` (-inf for generation; the reference scores them -1000 so sums stay
    finite); relative_top = 0 keeps every token: log_softmax(z_N) - log_softmax(z_j).
    """
    if relative_top > 0:
        out, chosen = dola_contrast(final_logits, early_logits, relative_top=relative_top)
        if filtered_value != float("-inf"):
            out = out.masked_fill(out == float("-inf"), filtered_value)
        return out, chosen
    check_layer_logits(final_logits, early_logits)
    chosen = layer_divergences(final_logits, early_logits).argmax(-1)
    premature = early_logits[torch.arange(early_logits.shape[0], device=chosen.device), chosen]
    out = final_logits.float().log_softmax(-1) - premature.float().log_softmax(-1)
    return out.to(final_logits.dtype), chosen
