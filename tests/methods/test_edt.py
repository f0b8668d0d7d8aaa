"""Entropy-based dynamic temperature: golden values by hand, properties on random logits with
-inf, ties and extremes, rows alone equal to the batch, generation equal to transformers'
generate() with the same step as a logits processor, custom_generate, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch
from _generation import graft, prompt_batch
from _hypothesis import DECODING, logits, rows_alone
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.decoding import edt_logits, edt_temperature, entropy
from toolkit.graft.custom_generate import decoder
from toolkit.methods.options import EdtOptions, mode_decoding, with_overrides

INF = float("inf")


def test_golden_by_hand():
    # Two equal logits: H = ln 2, T = 1 * 0.8 ** (1 / ln 2) = 0.72475...
    two = torch.tensor([[0.0, 0.0, -INF]])
    assert float(entropy(two)) == pytest.approx(math.log(2))
    t = float(edt_temperature(two, 1.0, 1.0))
    assert t == pytest.approx(0.8 ** (1 / math.log(2))) and t == pytest.approx(0.72475, abs=1e-5)
    # Uniform over 4, t0 0.5, theta 2: T = 0.5 * 0.8 ** (2 / ln 4).
    four = torch.zeros(1, 4)
    assert float(edt_temperature(four, 0.5, 2.0)) == pytest.approx(0.5 * 0.8 ** (2 / math.log(4)))
    # One token holds all the mass: H = 0, T = 0, the row becomes one-hot (greedy).
    sure = torch.tensor([[3.0, -INF, -INF]])
    assert float(edt_temperature(sure, 1.0, 1.0)) == 0.0
    assert edt_logits(sure, 1.0, 1.0).tolist() == [[0.0, -INF, -INF]]
    # theta = 0 (or base = 1): a fixed temperature t0.
    row = torch.tensor([[1.0, 0.5, -2.0]])
    torch.testing.assert_close(edt_logits(row, 0.7, 0.0), row / 0.7)
    torch.testing.assert_close(edt_logits(row, 0.7, 3.0, base=1.0), row / 0.7)
    torch.testing.assert_close(edt_logits(row, 1.0, 1.0), row / edt_temperature(row, 1.0, 1.0))


@DECODING
@given(st.integers(1, 3).flatmap(lambda b: st.integers(1, 12).flatmap(
    lambda v: logits((b, v)))), st.floats(0.1, 2.0), st.floats(0.0, 4.0))
def test_properties_on_random_logits(rows, t0, theta):
    temps = edt_temperature(rows, t0, theta)
    assert torch.isfinite(temps).all() and (temps >= 0).all() and (temps <= t0 * (1 + 1e-6)).all()
    out = edt_logits(rows, t0, theta)
    assert out.dtype == rows.dtype and not torch.isnan(out).any()
    positive = temps > 0
    assert torch.equal(torch.isneginf(out[positive]), torch.isneginf(rows[positive]))
    # The most probable token stays on top (a positive temperature keeps the order; T = 0 is
    # one-hot on the argmax).
    top = rows.float().argmax(-1, keepdim=True)
    assert torch.equal(out.float().gather(-1, top)[:, 0], out.float().amax(-1))
    torch.testing.assert_close(out, rows_alone(lambda r: edt_logits(r, t0, theta), rows))


def test_lower_entropy_lower_temperature():
    rows = torch.tensor([[4.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    temps = edt_temperature(rows, 1.0, 1.0).tolist()
    assert temps == sorted(temps) and temps[0] < temps[-1] < 1.0


def test_options_refusals_and_modes():
    assert methods.get("edt").stage == "temperature" and methods.get("edt").samples
    with pytest.raises(ConfigError, match="edt.t0"):
        EdtOptions(t0=0.0)
    with pytest.raises(ConfigError, match="edt.base"):
        EdtOptions(base=1.5)
    with pytest.raises(ConfigError, match="edt.theta"):
        EdtOptions(theta=-1.0)
    with pytest.raises(ConfigError, match="adaptive_temperature.enabled and edt.enabled are "
                                          "both true; enable at most one"):
        with_overrides(None, edt=True, adaptive_temperature=True)
    mode = mode_decoding(with_overrides(None, edt={"t0": 0.5}), "edt")
    assert mode.edt == EdtOptions(enabled=True, t0=0.5) and mode.do_sample and mode.seed == 0


class _Edt(LogitsProcessor):
    def __call__(self, input_ids, scores):
        return edt_logits(scores, 0.9, 1.5)


def test_generate_equals_transformers_with_the_step_as_a_processor(tiny_llama_dir):
    am = graft(tiny_llama_dir)
    ids, mask = prompt_batch(am.tokenizer)
    options = {"t0": 0.9, "theta": 1.5}
    got = am.generate(ids, mask, edt=options, do_sample=True, temperature=0.3, top_k=0, seed=5,
                      max_new_tokens=8)
    torch.manual_seed(5)
    want = am.base.generate(ids, attention_mask=mask, do_sample=True, top_k=0, max_new_tokens=8,
                            logits_processor=LogitsProcessorList([_Edt()]))
    assert torch.equal(got, want)  # EDT replaced the fixed temperature 0.3
    torch.manual_seed(5)
    plain = am.base.generate(ids, attention_mask=mask, do_sample=True, top_k=0, max_new_tokens=8)
    assert torch.equal(am.generate(ids, mask, edt=False, do_sample=True, top_k=0, seed=5,
                                   max_new_tokens=8), plain)
    assert not torch.equal(got, plain), "EDT must change the samples to be seen"
    greedy = am.generate(ids, mask, max_new_tokens=8)
    assert torch.equal(am.generate(ids, mask, edt=options, max_new_tokens=8), greedy)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    torch.manual_seed(5)
    folder = model.generate(ids, attention_mask=mask, do_sample=True, top_k=0, temperature=0.3,
                            max_new_tokens=8, custom_generate=decoder(edt=options))
    assert torch.equal(folder, got)
