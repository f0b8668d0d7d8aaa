"""DoLa: contrast the final layer with one premature layer per row (docs/methods.md section 3).

Layer choice: for each candidate j, jsd_j = 0.5 * (KL(M || P_N) + KL(M || P_j)).mean over the
vocabulary with M = (P_N + P_j) / 2, exactly what the reference code computes with F.kl_div; the
largest jsd_j wins (first one on ties). Unlike the reference, which picks one layer for the whole
batch, every row picks its own.

Filter: tokens with log p_N >= max log p_N + log(relative_top) are kept (the most probable token
always is); they get log p_N - log p_j, all others -inf.

Non-finite logits: -inf is read as the lowest float32 value (as in SLED), so a row never yields
NaN; a kept token that the premature layer rules out gets the largest finite value of the output
dtype. +inf and NaN are not valid logits.
"""

from __future__ import annotations

import math

import torch

from toolkit.decoding.checks import check_layer_logits

_LOWEST = torch.finfo(torch.float32).min


def _check(final_logits: torch.Tensor, early_logits: torch.Tensor, relative_top: float) -> None:
    check_layer_logits(final_logits, early_logits)
    if not 0.0 < float(relative_top) <= 1.0:
        raise ValueError(f"relative_top={relative_top!r} is out of range; it must be in (0, 1]")


def _kl_from(mix: torch.Tensor, log_mix: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(M || Q) per token as F.kl_div(log Q, M) computes it, with 0 where M is 0."""
    return torch.where(mix > 0, mix * (log_mix - log_q), torch.zeros_like(mix))


def layer_divergences(final_logits: torch.Tensor, early_logits: torch.Tensor) -> torch.Tensor:
    """The reference's Jensen-Shannon score of each candidate layer: (B, V), (B, N, V) -> (B, N)."""
    final = final_logits.float().clamp_min(_LOWEST).unsqueeze(1)
    early = early_logits.float().clamp_min(_LOWEST)
    mix = 0.5 * (torch.softmax(final, dim=-1) + torch.softmax(early, dim=-1))
    log_mix = mix.log()
    kl_final = _kl_from(mix, log_mix, torch.log_softmax(final, dim=-1)).mean(-1)
    kl_early = _kl_from(mix, log_mix, torch.log_softmax(early, dim=-1)).mean(-1)
    return 0.5 * (kl_final + kl_early)


def dola_contrast(
    final_logits: torch.Tensor, early_logits: torch.Tensor, *, relative_top: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """DoLa logits (B, V) in final_logits' dtype and the chosen layer (B,) (long index into N).

    final_logits (B, V) are the mature layer's logits, early_logits (B, N, V) the candidates'.
    """
    _check(final_logits, early_logits, relative_top)
    chosen = layer_divergences(final_logits, early_logits).argmax(-1)
    log_final = torch.log_softmax(final_logits.float().clamp_min(_LOWEST), dim=-1)
    premature = early_logits[torch.arange(early_logits.shape[0], device=chosen.device), chosen]
    log_premature = torch.log_softmax(premature.float().clamp_min(_LOWEST), dim=-1)
    threshold = log_final.amax(-1, keepdim=True) + math.log(relative_top)
    keep = log_final >= threshold
    contrast = (log_final - log_premature).clamp_max(torch.finfo(final_logits.dtype).max)
    out = torch.where(keep, contrast, torch.full_like(contrast, float("-inf")))
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
