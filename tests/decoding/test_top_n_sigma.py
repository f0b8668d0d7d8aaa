"""Top-n-sigma (docs/methods.md section 4): the check cases, temperature invariance, per-row n,
no-op rows, huge magnitudes, properties, row independence, bad input."""

import math

import pytest
import torch
from _hypothesis import DECODING, logits, rows_alone
from hypothesis import assume, given
from hypothesis import strategies as st

from toolkit.decoding import apply_temperature, top_n_sigma

INF = math.inf
TEMPERATURES = [0.25, 1.0, 3.0, 10.0]
CHECK_CASES = [
    (1.5, [4, -2.5, -3, 3.5, -1.5, -0.5, -3, 3.5], {0, 3, 7}),
    (1.5, [-INF, -INF, 0, 3.5, -3, -INF, -0.5, 3.5], {2, 3, 7}),
    (1.0, [0.7] * 8, set(range(8))),
    (1.0, [5] + [-INF] * 7, {0}),
    (2.0, [1, -1], {0, 1}),
]


def _kept(row):
    return set(torch.isfinite(row).nonzero().flatten().tolist())


def _plain_top_n_sigma(x, n):
    """docs/methods.md section 4 written directly in float32 (no rescaling), one row."""
    finite = x[torch.isfinite(x)]
    if n <= 0 or finite.numel() < 2:
        return x
    sigma = ((finite - finite.mean()) ** 2).mean().sqrt()
    return torch.where(x >= finite.max() - n * sigma, x, torch.tensor(-INF))


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("n, row, kept", CHECK_CASES)
def test_spec_cases(n, row, kept, temperature):
    x = apply_temperature(torch.tensor([row], dtype=torch.float32), temperature)
    out = top_n_sigma(x, n)
    assert _kept(out[0]) == kept
    assert torch.equal(out[0][list(kept)], x[0][list(kept)])


def test_spec_cases_in_one_batch_with_per_row_n():
    rows = [row for _, row, _ in CHECK_CASES[:4]]
    n = torch.tensor([case[0] for case in CHECK_CASES[:4]])
    out = top_n_sigma(torch.tensor(rows, dtype=torch.float32), n)
    assert [_kept(r) for r in out] == [kept for _, _, kept in CHECK_CASES[:4]]


def test_rows_without_filtering_are_unchanged():
    x = torch.tensor(
        [[4, -2.5, -3, 3.5], [4, -2.5, -3, 3.5], [4, -2.5, -3, 3.5], [1, -INF, -INF, -INF]]
    )
    out = top_n_sigma(x, torch.tensor([0.0, -1.0, 1.0, 1.0]))
    assert torch.equal(out[:2], x[:2]) and torch.equal(out[3], x[3])
    assert _kept(out[2]) == {0, 3}
    assert torch.equal(top_n_sigma(x, 0.0), x)


def test_huge_magnitudes_keep_the_same_set():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6, 50, generator=gen)
    for factor in (2.0**100, 2.0**-100):
        assert torch.equal(
            torch.isfinite(top_n_sigma(x * factor, 1.0)), torch.isfinite(top_n_sigma(x, 1.0))
        )


def test_low_precision_keeps_dtype_and_matches_a_float64_reference():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(4, 30, generator=gen) * 5
    for dtype in (torch.float16, torch.bfloat16):
        low = x.to(dtype)
        out = top_n_sigma(low, 1.2)
        assert out.dtype == dtype
        exact = low.double()
        threshold = exact.amax(-1, keepdim=True) - 1.2 * exact.std(-1, unbiased=False, keepdim=True)
        assert (exact - threshold).abs().min() > 1e-3, "no value sits on the threshold"
        keep = exact >= threshold
        assert torch.equal(torch.isfinite(out), keep)
        assert torch.equal(out[keep], low[keep])


def test_rows_are_independent():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(5, 20, generator=gen) * 3
    x[2, :18] = -INF
    n = torch.tensor([1.0, 0.0, 2.0, 0.5, -1.0])
    assert torch.equal(top_n_sigma(x, n), rows_alone(top_n_sigma, x, n))


@given(data=st.data())
@DECODING
def test_properties(data):
    batch, vocab = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 12))
    x = data.draw(logits((batch, vocab), all_masked_rows=True))
    n_values = st.one_of(st.sampled_from([0.0, -1.0, 1.0]), st.floats(-2.0, 4.0))
    n = torch.tensor(data.draw(st.lists(n_values, min_size=batch, max_size=batch)))
    out = top_n_sigma(x, n)
    assert out.dtype == x.dtype and not torch.isnan(out).any()
    kept = torch.isfinite(out)
    assert torch.equal(out[kept], x[kept])
    finite = torch.isfinite(x)
    for b in range(batch):
        if n[b] <= 0 or finite[b].sum() < 2:
            assert torch.equal(out[b], x[b])
        elif finite[b].any():
            assert kept[b, x[b].float().masked_fill(~finite[b], -INF).argmax()]
    magnitudes = x.float().abs()[finite]
    # The plain float32 formula overflows or underflows the variance outside this range.
    if ((magnitudes == 0) | ((magnitudes > 1e-15) & (magnitudes < 1e15))).all():
        plain = torch.stack([_plain_top_n_sigma(x[b].float(), n[b].item()) for b in range(batch)])
        assert torch.equal(kept, torch.isfinite(plain))


@given(data=st.data())
@DECODING
def test_kept_set_does_not_depend_on_temperature(data):
    vocab = data.draw(st.integers(2, 16))
    row = data.draw(st.lists(st.floats(-20, 20, width=32), min_size=vocab, max_size=vocab))
    x = torch.tensor([row])
    n = data.draw(st.floats(0.1, 3.0))
    sigma, top = x.std(unbiased=False).item(), x.max().item()
    threshold = top - n * sigma
    assume(((x - threshold).abs() > 1e-4 * (1 + abs(threshold))).all())
    base = torch.isfinite(top_n_sigma(x, n))
    for temperature in TEMPERATURES:
        assert torch.equal(torch.isfinite(top_n_sigma(apply_temperature(x, temperature), n)), base)


@pytest.mark.parametrize(
    "x, n, match",
    [
        (torch.zeros(2, 3, 4), 1.0, "logits"),
        (torch.zeros(2, 4), torch.ones(3), "n must be"),
        (torch.zeros(2, 4), "1", "n must be"),
        (torch.zeros(2, 4, dtype=torch.long), 1.0, "floating-point"),
    ],
)
def test_bad_input(x, n, match):
    with pytest.raises(ValueError, match=match):
        top_n_sigma(x, n)
