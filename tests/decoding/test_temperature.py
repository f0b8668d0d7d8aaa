"""Temperature, sampling and per-temperature log-probs (docs/methods.md section 5): greedy rows, explicit
generators, values against log_softmax, properties, row independence, bad input."""

import math

import pytest
import torch
from _hypothesis import DECODING, logits, rows_alone
from hypothesis import given
from hypothesis import strategies as st

from toolkit.decoding import apply_temperature, sample_tokens, temperature_log_probs

INF = math.inf


def test_apply_temperature_divides_and_zero_is_one_hot():
    x = torch.tensor([[1.0, 3.0, 2.0, 3.0], [1.0, 3.0, 2.0, 3.0], [1.0, -INF, 2.0, 0.0]])
    out = apply_temperature(x, torch.tensor([0.0, 2.0, 0.5]))
    assert out[0].tolist() == [-INF, 0.0, -INF, -INF]
    assert out[1].tolist() == [0.5, 1.5, 1.0, 1.5]
    assert out[2].tolist() == [2.0, -INF, 4.0, 0.0]
    assert torch.equal(apply_temperature(x, 1.0), x)
    assert torch.equal(
        apply_temperature(x, 0.0)[:, [0, 2]], torch.tensor([[-INF, -INF]] * 2 + [[-INF, 0.0]])
    )


def test_low_precision_quotients_stay_finite():
    x = torch.tensor([[30000.0, 0.0, -30000.0, -INF]], dtype=torch.float16)
    out = apply_temperature(x, 0.25)
    assert out.dtype == torch.float16
    assert out[0].tolist() == [65504.0, 0.0, -65504.0, -INF]


def test_sample_tokens_is_deterministic_with_a_generator():
    x = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]])).repeat(4000, 1)
    first = sample_tokens(x, generator=torch.Generator().manual_seed(0))
    again = sample_tokens(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, again)
    freq = torch.bincount(first, minlength=4).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.03)
    assert sample_tokens(x[:2], do_sample=False).tolist() == [3, 3]


def test_greedy_rows_always_sample_the_argmax():
    x = torch.randn(6, 9, generator=torch.Generator().manual_seed(1))
    greedy = apply_temperature(x, torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    for seed in range(20):
        tokens = sample_tokens(greedy, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(tokens[::2], x[::2].argmax(-1))


def test_sample_tokens_refuses_rows_without_finite_logits():
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        sample_tokens(torch.tensor([[0.0, 1.0], [-INF, -INF]]))


def test_temperature_log_probs_values():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 11, generator=gen) * 4
    tokens = torch.randint(0, 11, (2, 3), generator=gen)
    tokens[0, 0] = x[0, 0].argmax()
    grid = torch.tensor([0.0, 0.2, 0.6, 1.0, 2.5])
    out = temperature_log_probs(x, tokens, grid)
    assert out.shape == (2, 3, 5) and out.dtype == torch.float32
    for g, tau in enumerate(grid.tolist()[1:], start=1):
        ref = torch.log_softmax(x / tau, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(out[..., g], ref, atol=1e-5, rtol=1e-6)
    is_top = tokens == x.argmax(-1)
    assert torch.equal(out[..., 0], torch.where(is_top, 0.0, -INF))
    assert out[0, 0, 0].item() == 0.0


def test_temperature_log_probs_normalise_and_survive_extremes():
    x = torch.tensor([[3e38, -3e38, 1e38, -INF], [-INF] * 4])
    grid = torch.tensor([0.0, 0.2, 1.0])
    every = torch.stack([temperature_log_probs(x, torch.full((2,), v), grid) for v in range(4)])
    assert not torch.isnan(every).any()
    assert torch.logsumexp(every[:, 0], dim=0).tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    assert (every[:, 1] == -INF).all()
    small = torch.randn(5, 7, generator=torch.Generator().manual_seed(3))
    lse = torch.logsumexp(
        torch.stack([temperature_log_probs(small, torch.full((5,), v), grid) for v in range(7)]), 0
    )
    assert torch.allclose(lse, torch.zeros(5, 3), atol=1e-5)


def test_temperature_log_probs_gradient_and_1d_input():
    x = torch.randn(6, requires_grad=True)
    out = temperature_log_probs(x, torch.tensor(2), torch.tensor([0.0, 0.5]))
    assert out.shape == (2,)
    out[1].backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_rows_are_independent():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, 10, generator=gen) * 3
    t = torch.tensor([0.0, 0.3, 1.0, 4.0])
    assert torch.equal(apply_temperature(x, t), rows_alone(apply_temperature, x, t))
    tokens = torch.randint(0, 10, (4,), generator=gen)
    grid = torch.tensor([0.0, 0.5, 1.0])
    alone = torch.cat(
        [temperature_log_probs(x[i : i + 1], tokens[i : i + 1], grid) for i in range(4)]
    )
    assert torch.equal(temperature_log_probs(x, tokens, grid), alone)
    greedy = apply_temperature(x, 0.0)
    assert torch.equal(sample_tokens(greedy), rows_alone(lambda r: sample_tokens(r), greedy))


@given(data=st.data())
@DECODING
def test_properties(data):
    batch, vocab = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 12))
    x = data.draw(logits((batch, vocab)))
    taus = data.draw(
        st.lists(st.one_of(st.just(0.0), st.floats(0.05, 10.0)), min_size=batch, max_size=batch)
    )
    t = torch.tensor(taus)
    out = apply_temperature(x, t)
    assert out.dtype == x.dtype and not torch.isnan(out).any()
    assert torch.equal(torch.isfinite(out[t > 0]), torch.isfinite(x[t > 0]))
    greedy = t == 0
    top = x.float().argmax(-1)
    assert (torch.isfinite(out[greedy]).sum(-1) == 1).all()
    assert torch.equal(out[greedy].float().argmax(-1), top[greedy])
    tokens = sample_tokens(
        out, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 99)))
    )
    assert torch.equal(tokens[greedy], top[greedy])
    assert torch.isfinite(x.float().gather(-1, tokens.unsqueeze(-1))).all()
    grid = torch.tensor(
        data.draw(st.lists(st.one_of(st.just(0.0), st.floats(0.05, 10.0)), min_size=1, max_size=4))
    )
    lp = temperature_log_probs(x, tokens, grid)
    assert lp.shape == (batch, grid.numel()) and not torch.isnan(lp).any() and (lp <= 1e-6).all()
    assert torch.equal(
        lp[:, grid == 0] == 0, (tokens == top).unsqueeze(-1).expand(-1, int((grid == 0).sum()))
    )


@pytest.mark.parametrize(
    "temperature, match",
    [
        (-0.5, "temperature"),
        (
            torch.tensor([1.0, -1.0]),
            r"temperature must be finite and >= 0 \(0 means greedy\); got \[-1.0\]",
        ),
        (INF, "temperature"),
        (torch.ones(3), r"shape \(B,\)"),
        ("hot", "temperature must be"),
    ],
)
def test_apply_temperature_bad_input(temperature, match):
    with pytest.raises(ValueError, match=match):
        apply_temperature(torch.zeros(2, 4), temperature)


@pytest.mark.parametrize(
    "x, tokens, grid, match",
    [
        (torch.zeros(2, 4), torch.zeros(3, dtype=torch.long), torch.ones(2), "tokens shape"),
        (
            torch.zeros(2, 4),
            torch.zeros(2, dtype=torch.long),
            torch.tensor([0.5, -0.1]),
            "temperatures",
        ),
        (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), torch.ones(2, 2), "temperatures"),
        (
            torch.zeros(2, 4, dtype=torch.long),
            torch.zeros(2, dtype=torch.long),
            torch.ones(2),
            "floating",
        ),
    ],
)
def test_temperature_log_probs_bad_input(x, tokens, grid, match):
    with pytest.raises(ValueError, match=match):
        temperature_log_probs(x, tokens, grid)
