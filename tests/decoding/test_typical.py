"""Locally typical sampling's filter: golden values by hand, transformers' warper as a second
opinion on random logits with -inf, ties and extremes (the method: tests/methods/test_typical.py)."""

from __future__ import annotations

import math

import torch
from _hypothesis import DECODING, logits
from hypothesis import given
from hypothesis import strategies as st
from transformers import TypicalLogitsWarper

from toolkit.decoding import typical_filter

INF = float("inf")


def test_golden_by_hand():
    # p = (0.5, 0.25, 0.125, 0.125): H = 1.75 bits = 1.2130 nats; -log p = (0.693, 1.386,
    # 2.079, 2.079): distances (0.520, 0.173, 0.866, 0.866). Typicality order: token 1 (0.25),
    # token 0 (cumulative 0.75), then tokens 2 and 3 together (a tie).
    logits = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.125), math.log(0.125)]])
    kept = lambda mass: torch.isfinite(typical_filter(logits, mass))[0].tolist()  # noqa: E731
    assert kept(0.2) == [False, True, False, False]
    assert kept(0.25) == [False, True, False, False]  # token 1 alone reaches 0.25
    assert kept(0.26) == [True, True, False, False]
    assert kept(0.7) == [True, True, False, False]
    assert kept(0.8) == [True, True, True, True]  # the tie at the cut is kept together
    assert torch.equal(typical_filter(logits, 1.0), logits)
    values = typical_filter(logits, 0.7)
    assert torch.equal(values[0, :2], logits[0, :2]) and values[0, 2:].tolist() == [-INF, -INF]


def test_minus_inf_is_never_kept_and_one_token_always_is():
    logits = torch.tensor([[0.0, -INF, -INF, 5.0], [3.0, 3.0, 3.0, 3.0]])
    out = typical_filter(logits, 0.01)
    assert torch.isfinite(out).sum(-1).tolist() == [1, 4]  # a uniform row: every token ties
    assert torch.isinf(typical_filter(logits, 0.999)[0, 1:3]).all()
    half = typical_filter(logits.half(), 0.5)
    assert half.dtype == torch.float16


@DECODING
@given(st.integers(1, 3).flatmap(lambda b: st.integers(1, 12).flatmap(
    lambda v: logits((b, v), torch.float32))), st.floats(0.01, 0.999))
def test_same_kept_set_as_transformers(rows, mass):
    theirs = TypicalLogitsWarper(mass)(None, rows.clone())
    ours = typical_filter(rows, mass)
    assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
    kept = torch.isfinite(ours)
    assert torch.equal(ours[kept], rows[kept])
