"""LPO losses (docs/methods.md section 6) on hand-computed cases."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.lpo import losses

LOG2 = math.log(2.0)
INF = float("inf")


def _batch(b=3, t=4, g=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lp = torch.log_softmax(torch.randn(b, t, g, generator=gen), -1)
    lp[..., 0] = torch.where(torch.rand(b, t, generator=gen) > 0.5, 0.0, -INF)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, -1] = False
    return {
        "chosen_tau": torch.randint(0, g, (b, t), generator=gen),
        "rejected_tau": torch.randint(0, g, (b, t), generator=gen),
        "chosen_mask": mask,
        "rejected_mask": mask.clone(),
        "chosen_lp": lp,
        "rejected_lp": lp.flip(0),
        "chosen_word_logp": torch.randn(b, generator=gen),
        "rejected_word_logp": torch.randn(b, generator=gen),
    }


@pytest.mark.parametrize("variant", losses.VARIANTS)
@pytest.mark.parametrize("level", ["sequence", "token"])
def test_zero_head_gives_log2(variant, level):
    batch = _batch()
    shape = (3, 6) if level == "sequence" else (3, 4, 6)
    head = torch.zeros(shape)
    out = losses.lpo_loss(variant, 0.7, head, head, batch)
    assert out.loss.item() == pytest.approx(LOG2, abs=1e-6)
    assert torch.all(out.margin.abs() < 1e-6)


def test_latent_zero_head_log2_with_unequal_lengths():
    batch = _batch()
    batch["rejected_mask"] = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]).bool()
    head = torch.zeros(3, 4, 6)
    assert losses.lpo_loss("latent", 1.0, head, head, batch).loss.item() == pytest.approx(LOG2)


def test_tokens_word_term_is_exactly_zero_with_frozen_lm():
    batch = _batch()
    word_c, word_r = batch["chosen_word_logp"], batch["rejected_word_logp"]
    assert torch.equal(losses.word_token_term(word_c, word_c, word_r, word_r), torch.zeros(3))
    head_c = torch.randn(3, 6, requires_grad=True)
    head_r = torch.randn(3, 6)
    a = losses.lpo_loss("tokens", 0.5, head_c, head_r, batch)
    b = losses.lpo_loss("tokens_separate", 0.5, head_c, head_r, batch)
    assert torch.equal(a.loss, b.loss)


def test_tokens_word_term_with_a_policy_that_differs_from_the_reference():
    """log P(y_c)/Pref(y_c) - log P(y_r)/Pref(y_r) by hand, and its place in the tokens loss:
    with a uniform head the margin is the word term alone."""
    policy_c, ref_c = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -2.0])
    policy_r, ref_r = torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -1.5])
    term = losses.word_token_term(policy_c, ref_c, policy_r, ref_r)
    assert term.tolist() == pytest.approx([0.5 + 1.0, 0.0 - 0.5])
    head = torch.zeros(2, 4)
    tau = torch.tensor([1, 3])
    out = losses.tokens_loss(head, tau, head, tau.flip(0), 0.5,
                             (policy_c, ref_c, policy_r, ref_r))
    assert out.margin.tolist() == pytest.approx([1.5, -0.5])
    expected = (math.log1p(math.exp(-0.75)) + math.log1p(math.exp(0.25))) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_tokens_separate_hand_computed_sequence_level():
    head = torch.tensor([[0.0, math.log(3.0)]])  # P(tau) = [1/4, 3/4]
    out = losses.tokens_separate_loss(head, torch.tensor([1]), head, torch.tensor([0]), 0.5)
    assert out.margin.item() == pytest.approx(math.log(3.0))
    assert out.loss.item() == pytest.approx(math.log(1.0 + 3.0**-0.5), rel=1e-6)


def test_tokens_separate_token_level_sums_masked_tokens():
    head = torch.tensor([[[0.0, math.log(3.0)]] * 3])  # (1, 3, 2)
    tau_c, tau_r = torch.tensor([[1, 1, 0]]), torch.tensor([[0, 0, 0]])
    mask_c = torch.tensor([[True, True, False]])
    mask_r = torch.tensor([[True, False, False]])
    out = losses.tokens_separate_loss(head, tau_c, head, tau_r, 1.0, mask_c, mask_r)
    expected = 2 * math.log(0.75) - math.log(0.25)
    assert out.margin.item() == pytest.approx(expected, rel=1e-6)
    assert out.loss.item() == pytest.approx(math.log1p(math.exp(-expected)), rel=1e-6)


def test_latent_hand_computed_with_greedy_temperature():
    head = torch.tensor([[0.0, math.log(3.0)]])  # grid [0, 1], P(tau|h) = [1/4, 3/4]
    lp_c = torch.tensor([[[0.0, math.log(0.5)]]])  # the argmax token: one-hot at tau = 0
    lp_r = torch.tensor([[[-INF, math.log(0.2)]]])  # not the argmax: impossible at tau = 0
    mask = torch.ones(1, 1, dtype=torch.bool)
    out = losses.latent_loss(head, lp_c, mask, head, lp_r, mask, 1.0)
    ratio_c = math.log((0.25 + 0.5 * 0.75) / 0.75)
    ratio_r = math.log((0.2 * 0.75) / (0.2 * 0.5))
    assert out.margin.item() == pytest.approx(ratio_c - ratio_r, rel=1e-6)
    assert out.loss.item() == pytest.approx(math.log1p(math.exp(ratio_r - ratio_c)), rel=1e-6)
    # logps: the policy's log-probability of each reply, sum_tau P(y|tau) P(tau|h)
    assert out.chosen_logps.item() == pytest.approx(math.log(0.25 + 0.5 * 0.75), rel=1e-6)
    assert out.rejected_logps.item() == pytest.approx(math.log(0.2 * 0.75), rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(losses.VARIANTS), st.booleans())
def test_no_nan_values_or_grads(seed, variant, token_level):
    batch = _batch(seed=seed)
    batch["chosen_lp"][1, :, 0] = -INF
    batch["chosen_mask"][2] = False
    shape = (3, 4, 6) if token_level else (3, 6)
    gen = torch.Generator().manual_seed(seed)
    head_c = (3 * torch.randn(shape, generator=gen)).requires_grad_()
    head_r = (3 * torch.randn(shape, generator=gen)).requires_grad_()
    out = losses.lpo_loss(variant, 2.0, head_c, head_r, batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.isfinite(head_c.grad).all() and torch.isfinite(head_r.grad).all()


def test_unknown_variant():
    with pytest.raises(ValueError, match="tokens_separate"):
        losses.lpo_loss("dpo", 1.0, torch.zeros(1, 2), torch.zeros(1, 2), _batch(1, 1, 2))


def _two_pairs():
    """Head P(tau) = [0.5, 0.25, 0.25] for both pairs; pair 0 chose tau 0 over tau 1 (margin
    log 2), pair 1 chose tau 1 over tau 0 (margin -log 2)."""
    head = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]))
    return head, torch.tensor([0, 1]), torch.tensor([1, 0])


@pytest.mark.parametrize("loss_type, expected", [
    # mean of -log sigma(0.5 * log 2) = log(1 + 2**-0.5) and -log sigma(-0.5 log 2) = log(1 + 2**0.5)
    ("sigmoid", (math.log(1 + 2 ** -0.5) + math.log(1 + 2 ** 0.5)) / 2),
    # (log 2 - 1/(2*0.5))^2 and (-log 2 - 1)^2
    ("ipo", ((math.log(2) - 1) ** 2 + (math.log(2) + 1) ** 2) / 2),
    # relu(1 - 0.5 log 2) + relu(1 + 0.5 log 2) = 2, mean 1
    ("hinge", 1.0),
])
def test_loss_types_hand_computed(loss_type, expected):
    head, tau_c, tau_r = _two_pairs()
    out = losses.tokens_separate_loss(head, tau_c, head, tau_r, 0.5, loss_type=loss_type)
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.margin.tolist() == pytest.approx([math.log(2), -math.log(2)], abs=1e-6)


def test_hinge_is_zero_past_the_margin_and_ipo_at_its_target():
    head = torch.log(torch.tensor([[0.8, 0.1, 0.1]]))
    # margin log 8 = 2.079; beta 1: hinge relu(1 - 2.079) = 0; ipo target 1/(2 beta) = 0.5
    out = losses.tokens_separate_loss(head, torch.tensor([0]), head, torch.tensor([1]), 1.0,
                                      loss_type="hinge")
    assert out.loss.item() == 0.0
    beta = 1 / (2 * math.log(8))  # makes the ipo target equal the margin
    out = losses.tokens_separate_loss(head, torch.tensor([0]), head, torch.tensor([1]), beta,
                                      loss_type="ipo")
    assert out.loss.item() == pytest.approx(0.0, abs=1e-10)


def test_trl_reward_metrics_hand_computed():
    head, tau_c, tau_r = _two_pairs()
    out = losses.tokens_separate_loss(head, tau_c, head, tau_r, 0.5)
    metrics = {k: v.item() for k, v in losses.reward_metrics(out, 0.5).items()}
    side = 0.5 * (math.log(0.5) + math.log(0.25)) / 2  # beta * mean log P(tau) of each side
    logp = (math.log(0.5) + math.log(0.25)) / 2  # the head's mean log P(tau) of each side
    assert metrics == pytest.approx({"rewards/chosen": side, "rewards/rejected": side,
                                     "rewards/margins": 0.0, "rewards/accuracies": 0.5,
                                     "logps/chosen": logp, "logps/rejected": logp}, abs=1e-6)
    with pytest.raises(ValueError, match="loss_type"):
        losses.preference_loss(out.margin, 1.0, "kto")
