"""Hypothesis settings and logit strategies shared by the decoding tests.

The profile is applied per test as a decorator (`@DECODING`), so it changes nothing for other
test modules. Under CI (env CI set) examples are derandomized, so runs are reproducible.
"""

from __future__ import annotations

import math
import os

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "toolkit-decoding",
    max_examples=50,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DECODING = settings.get_profile("toolkit-decoding")

DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])
_BASE = st.one_of(
    st.floats(-1.0, 1.0, width=32),
    st.sampled_from([-1.0, 0.0, 0.5, 1.0]),  # ties
    st.just(-math.inf),
)
_SCALES = (1e-30, 1e-3, 1.0, 30.0, 1e4)


@st.composite
def logits(draw, shape, dtype=None, all_masked_rows=False):
    """A logit tensor of `shape`: ties, -inf entries, tiny to huge magnitudes, fp16/bf16.

    The scale is one per tensor or one per entry (mixed magnitudes in a row). Unless
    `all_masked_rows`, every row (last dimension) keeps at least one finite logit.
    """
    dtype = dtype or draw(DTYPES)
    huge = 6e4 if dtype == torch.float16 else 1e30
    count = math.prod(shape)
    base = torch.tensor(draw(st.lists(_BASE, min_size=count, max_size=count)))
    scales = st.sampled_from(_SCALES + (huge,))
    if draw(st.booleans()):
        scale = torch.full((count,), draw(scales))
    else:
        scale = torch.tensor(draw(st.lists(scales, min_size=count, max_size=count)))
    values = (base * scale).reshape(shape)
    if not all_masked_rows:
        masked = ~torch.isfinite(values).any(-1)
        values[..., 0] = torch.where(masked, torch.zeros_like(values[..., 0]), values[..., 0])
    return values.to(dtype)


@st.composite
def layer_logits(draw):
    """(final (B, V), early (B, N, V)) of one drawn dtype, B <= 3, N <= 4, V <= 12; early rows
    may be fully masked."""
    batch, layers, vocab = (draw(st.integers(1, n)) for n in (3, 4, 12))
    dtype = draw(DTYPES)
    final = draw(logits((batch, vocab), dtype))
    early = draw(logits((batch, layers, vocab), dtype, all_masked_rows=True))
    return final, early


def rows_alone(fn, *batched):
    """fn applied to each row of the batched tensors alone, results stacked on dim 0."""
    outs = [fn(*(t[i : i + 1] for t in batched)) for i in range(batched[0].shape[0])]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))
    return torch.cat(outs)
