"""p-less sampling: golden values by hand, a float64 second opinion on random logits with -inf,
ties and extremes, rows alone equal to the batch, and the method through generate and modes."""

from __future__ import annotations

import math

import pytest
import torch
from _generation import graft, prompt_batch
from _hypothesis import DECODING, logits, rows_alone
from hypothesis import given
from hypothesis import strategies as st

from toolkit import methods
from toolkit.decoding import p_less_filter, p_less_threshold
from toolkit.methods.options import PLessOptions, mode_decoding, with_overrides

INF = float("inf")


def _kept(probs: list[float]) -> list[bool]:
    row = torch.tensor([[math.log(p) if p > 0 else -INF for p in probs]])
    return torch.isfinite(p_less_filter(row))[0].tolist()


def test_golden_by_hand():
    # L = 0.25 + 0.0625 + 2 * 0.015625 = 0.34375: only p = 0.5 reaches it.
    row = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.125), math.log(0.125)]])
    assert float(p_less_threshold(row)) == pytest.approx(0.34375)
    assert _kept([0.5, 0.25, 0.125, 0.125]) == [True, False, False, False]
    # L = 0.16 + 0.1225 + 0.0625 = 0.345: 0.4 and 0.35 reach it, 0.25 does not.
    assert _kept([0.4, 0.35, 0.25]) == [True, True, False]
    # Uniform over 4: L = 1/4, every token (ties at the top are kept together).
    assert _kept([0.25] * 4) == [True] * 4
    # A token of probability 0 is never kept, even where L is small.
    assert _kept([0.5, 0.5, 0.0]) == [True, True, False]
    values = p_less_filter(row)
    assert values[0, 0] == row[0, 0] and values[0, 1:].tolist() == [-INF] * 3


def test_the_temperature_widens_the_kept_set():
    row = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    counts = [int(torch.isfinite(p_less_filter(row / t)).sum()) for t in (0.5, 1.0, 4.0)]
    assert counts == sorted(counts) and counts[0] < counts[-1]


@DECODING
@given(st.integers(1, 3).flatmap(lambda b: st.integers(1, 12).flatmap(
    lambda v: logits((b, v)))))
def test_kept_set_against_float64(rows):
    out = p_less_filter(rows)
    assert out.dtype == rows.dtype and not torch.isnan(out).any()
    kept = torch.isfinite(out)
    assert torch.equal(out[kept], rows[kept])
    probs = torch.softmax(rows.double(), -1)
    threshold = (probs * probs).sum(-1, keepdim=True)
    top = probs.argmax(-1)
    assert kept[torch.arange(len(rows)), top].all()  # the most probable token is always kept
    clear = (probs - threshold).abs() > 1e-6 * threshold  # away from float rounding of L
    assert torch.equal(kept[clear & (probs > 0)], (probs >= threshold)[clear & (probs > 0)])
    assert not kept[probs == 0].any()
    torch.testing.assert_close(out, rows_alone(p_less_filter, rows))


def test_options_registry_and_modes():
    method = methods.get("p_less")
    assert method.stage == "filter" and method.samples and method.score is None
    assert with_overrides(None, p_less=True).p_less == PLessOptions(enabled=True)
    mode = mode_decoding(with_overrides(None, p_less=True), "p_less")
    assert mode.p_less.enabled and mode.do_sample and mode.seed == 0


def test_generate_samples_inside_the_set_and_off_is_plain_sampling(tiny_llama_dir):
    am = graft(tiny_llama_dir)
    ids, mask = prompt_batch(am.tokenizer)
    kwargs = dict(do_sample=True, temperature=1.0, top_k=0, seed=3, max_new_tokens=6)
    out = am.generate(ids, mask, p_less=True, return_dict_in_generate=True, output_scores=True,
                      return_records=True, **kwargs)
    scores = out.generate_output.scores
    vocab = am.base.config.vocab_size
    for step in range(6):
        tokens = out.sequences[:, ids.shape[1] + step]
        assert torch.isfinite(scores[step].gather(-1, tokens[:, None])).all()
        assert (torch.isfinite(scores[step]).sum(-1) < vocab).all()
    torch.manual_seed(3)
    plain = am.base.generate(ids, attention_mask=mask, do_sample=True, top_k=0,
                             max_new_tokens=6)
    assert torch.equal(am.generate(ids, mask, p_less=False, **kwargs), plain)
