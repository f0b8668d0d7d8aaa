"""LPO losses (docs/methods.md section 6). Pure torch: no Lightning, no transformers.

Shapes: B pairs, T reply positions, G grid temperatures. Head logits are (B, G) at sequence
level (one temperature from the last prompt token) or (B, T, G) at token level. Masks are bool
(B, T), True on real reply tokens. Per-temperature token log-probs `token_log_probs` (B, T, G)
hold log P(y_t | tau) with tau = 0 as a log one-hot (0 or -inf), as
`toolkit.decoding.temperature_log_probs` gives them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

VARIANTS = ("tokens", "tokens_separate", "latent")
# How the margin becomes a loss, named as TRL's DPOTrainer names its loss_type values.
LOSS_TYPES = ("sigmoid", "ipo", "hinge")


class LossOutput(NamedTuple):
    loss: torch.Tensor  # scalar, mean over pairs
    margin: torch.Tensor  # (B,) chosen - rejected (the bracket inside sigma), before beta
    chosen: torch.Tensor | None = None  # (B,) the chosen reply's log-ratio (reward / beta)
    rejected: torch.Tensor | None = None  # (B,) the rejected reply's log-ratio
    # (B,) the policy's log-probability of each reply (the numerator of its log-ratio)
    chosen_logps: torch.Tensor | None = None
    rejected_logps: torch.Tensor | None = None


def temperature_log_prob(
    head_logits: torch.Tensor, tau_index: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """log P(tau) of each reply: one term at sequence level, a masked sum at token level."""
    log_p = torch.log_softmax(head_logits.float(), dim=-1)
    if head_logits.dim() == 2:
        index = tau_index if tau_index.dim() == 1 else tau_index[:, 0]
        return log_p.gather(-1, index.long().unsqueeze(-1)).squeeze(-1)
    picked = log_p.gather(-1, tau_index.long().clamp(min=0).unsqueeze(-1)).squeeze(-1)
    if mask is None:
        return picked.sum(-1)
    return torch.where(mask, picked, torch.zeros_like(picked)).sum(-1)


def _latent_sums(head_logits, token_log_probs, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_t log sum_tau P(y_t|tau) P(tau|h), the same with Pref(tau) uniform), each (B,)."""
    lp = token_log_probs.float().masked_fill(~mask.unsqueeze(-1), 0.0)
    log_p_tau = torch.log_softmax(head_logits.float(), dim=-1)
    if log_p_tau.dim() == 2:
        log_p_tau = log_p_tau.unsqueeze(1)
    grid = token_log_probs.shape[-1]
    policy = torch.logsumexp(lp + log_p_tau, dim=-1)
    reference = torch.logsumexp(lp, dim=-1) - math.log(grid)
    zero = torch.zeros_like(policy)
    return (torch.where(mask, policy, zero).sum(-1), torch.where(mask, reference, zero).sum(-1))


def word_token_term(
    policy_c: torch.Tensor, ref_c: torch.Tensor, policy_r: torch.Tensor, ref_r: torch.Tensor
) -> torch.Tensor:
    """log P(y_c)/Pref(y_c) - log P(y_r)/Pref(y_r): exactly 0 when the LM is the reference."""
    return (policy_c - ref_c) - (policy_r - ref_r)


def preference_loss(margin: torch.Tensor, beta: float, loss_type: str = "sigmoid",
                    chosen: torch.Tensor | None = None, rejected: torch.Tensor | None = None,
                    logps: tuple[torch.Tensor, torch.Tensor] | None = None) -> LossOutput:
    """The margin m turned into a loss, averaged over pairs (TRL's DPO loss types):
    sigmoid -log sigma(beta * m); ipo (m - 1 / (2 * beta))^2; hinge relu(1 - beta * m)."""
    m = margin.float()
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * m)
    elif loss_type == "ipo":
        losses = (m - 1.0 / (2.0 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1.0 - beta * m)
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {LOSS_TYPES}")
    return LossOutput(losses.mean(), margin, chosen, rejected, *(logps or (None, None)))


def reward_metrics(out: LossOutput, beta: float) -> dict[str, torch.Tensor]:
    """TRL's DPO metrics: rewards/chosen and rewards/rejected (beta times each side's
    log-ratio, mean over pairs), rewards/margins (beta * margin), rewards/accuracies (share of
    pairs whose chosen reward is above the rejected one), logps/chosen and logps/rejected (the
    policy's log-probability of each reply, mean over pairs)."""
    metrics = {"rewards/margins": beta * out.margin.float().mean(),
               "rewards/accuracies": (out.margin > 0).float().mean()}
    if out.chosen is not None and out.rejected is not None:
        metrics["rewards/chosen"] = beta * out.chosen.float().mean()
        metrics["rewards/rejected"] = beta * out.rejected.float().mean()
    if out.chosen_logps is not None and out.rejected_logps is not None:
        metrics["logps/chosen"] = out.chosen_logps.float().mean()
        metrics["logps/rejected"] = out.rejected_logps.float().mean()
    return metrics


def tokens_separate_loss(
    head_c: torch.Tensor,
    tau_c: torch.Tensor,
    head_r: torch.Tensor,
    tau_r: torch.Tensor,
    beta: float,
    mask_c: torch.Tensor | None = None,
    mask_r: torch.Tensor | None = None,
    loss_type: str = "sigmoid",
) -> LossOutput:
    """Margin log P(tau_c) - log P(tau_r); -log sigma(beta * margin) with the sigmoid type."""
    chosen = temperature_log_prob(head_c, tau_c, mask_c)
    rejected = temperature_log_prob(head_r, tau_r, mask_r)
    return preference_loss(chosen - rejected, beta, loss_type, chosen, rejected,
                           (chosen, rejected))


def tokens_loss(
    head_c: torch.Tensor,
    tau_c: torch.Tensor,
    head_r: torch.Tensor,
    tau_r: torch.Tensor,
    beta: float,
    words: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    mask_c: torch.Tensor | None = None,
    mask_r: torch.Tensor | None = None,
    loss_type: str = "sigmoid",
) -> LossOutput:
    """Margin word-token log ratios + log P(tau_c) - log P(tau_r).

    `words` = (policy log P(y_c), reference log P(y_c), policy log P(y_r), reference log P(y_r)),
    per-sequence sums (B,). With a frozen LM policy and reference are the same tensors.
    """
    policy_c, ref_c, policy_r, ref_r = words
    tau_lp_c = temperature_log_prob(head_c, tau_c, mask_c)
    tau_lp_r = temperature_log_prob(head_r, tau_r, mask_r)
    chosen = (policy_c - ref_c) + tau_lp_c
    rejected = (policy_r - ref_r) + tau_lp_r
    return preference_loss(chosen - rejected, beta, loss_type, chosen, rejected,
                           (policy_c + tau_lp_c, policy_r + tau_lp_r))


def latent_loss(
    head_c: torch.Tensor,
    lp_c: torch.Tensor,
    mask_c: torch.Tensor,
    head_r: torch.Tensor,
    lp_r: torch.Tensor,
    mask_r: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
) -> LossOutput:
    """Margin: latent log ratio of y_c - latent log ratio of y_r."""
    policy_c, reference_c = _latent_sums(head_c, lp_c, mask_c)
    policy_r, reference_r = _latent_sums(head_r, lp_r, mask_r)
    chosen, rejected = policy_c - reference_c, policy_r - reference_r
    return preference_loss(chosen - rejected, beta, loss_type, chosen, rejected,
                           (policy_c, policy_r))


def lpo_loss(
    variant: str, beta: float, head_c: torch.Tensor, head_r: torch.Tensor, batch: dict,
    loss_type: str = "sigmoid",
) -> LossOutput:
    """Dispatch on the variant with the tensors of a cached batch (see `toolkit.lpo.cache`)."""
    masks = batch["chosen_mask"], batch["rejected_mask"]
    taus = batch["chosen_tau"], batch["rejected_tau"]
    if variant == "tokens_separate":
        return tokens_separate_loss(head_c, taus[0], head_r, taus[1], beta, *masks, loss_type)
    if variant == "tokens":
        word_c, word_r = batch["chosen_word_logp"], batch["rejected_word_logp"]
        words = (word_c, word_c, word_r, word_r)
        return tokens_loss(head_c, taus[0], head_r, taus[1], beta, words, *masks, loss_type)
    if variant == "latent":
        lps = batch["chosen_lp"], batch["rejected_lp"]
        return latent_loss(head_c, lps[0], masks[0], head_r, lps[1], masks[1], beta, loss_type)
    raise ValueError(f"unknown LPO loss variant {variant!r}; choose one of {VARIANTS}")
