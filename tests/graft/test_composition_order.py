"""The composition order pinned by value: SLED or DoLa on raw logits -> repetition penalty ->
fixed temperature. The scores transformers hands to sampling (`output_scores`) are compared with
what that order gives; temperature applied any earlier gives other values."""

from __future__ import annotations

import pytest
import torch

from toolkit.decoding import sled_evolve
from toolkit.graft.augmented import AugmentedModel
from toolkit.methods.options import GraftConfig, HeadConfig
from toolkit.testing import build_tiny_model, build_tokenizer

T = 0.5


@pytest.fixture(scope="module")
def model():
    return AugmentedModel.graft(build_tiny_model("llama"), GraftConfig(head=HeadConfig(hidden_size=8)),
                                tokenizer=build_tokenizer())


def _scores(model, ids, **options) -> torch.Tensor:
    out = model.generate(ids, do_sample=True, max_new_tokens=1, seed=0,
                         return_dict_in_generate=True, output_scores=True, **options)
    return out.scores[0]


def _ids(rows: int = 4) -> torch.Tensor:
    return torch.randint(3, 300, (rows, 6), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", ["sled", "dola"])
def test_fixed_temperature_comes_after_sled_and_dola(model, method):
    ids = _ids()
    plain = _scores(model, ids, **{method: True})
    cooled = _scores(model, ids, temperature=T, **{method: True})
    finite = torch.isfinite(plain)
    assert torch.equal(finite, torch.isfinite(cooled)) and finite.sum() > ids.shape[0]
    assert torch.allclose(cooled[finite], plain[finite] / T, rtol=1e-5, atol=1e-5)


def test_sled_does_not_commute_with_temperature():
    """The test above has power: SLED of cooled logits is not cooled SLED."""
    gen = torch.Generator().manual_seed(0)
    final, early = torch.randn(2, 50, generator=gen) * 3, torch.randn(2, 3, 50, generator=gen) * 3
    kwargs = dict(evolution_rate=2.0, evolution_scale=10)
    after = sled_evolve(final, early, **kwargs) / T
    before = sled_evolve(final / T, early / T, **kwargs)
    assert not torch.allclose(after, before, atol=1e-3)


def test_temperature_zero_comes_after_the_repetition_penalty(model):
    """With temperature 0 the row becomes one-hot at the argmax of what reaches it: the
    penalised logits, so a prompt token that the raw logits rank first is not chosen."""
    ids = torch.randint(3, 300, (64, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ids[:, 0] = model.base(ids).logits[:, -1].argmax(-1)
        raw_top = model.base(ids).logits[:, -1].argmax(-1)
    rows = (ids == raw_top[:, None]).any(-1)
    assert rows.sum() >= 3
    ids, raw_top = ids[rows], raw_top[rows]
    plain = _scores(model, ids, temperature=0.0)
    assert torch.equal(plain.argmax(-1), raw_top)
    penalised = _scores(model, ids, temperature=0.0, repetition_penalty=1e4)
    assert (penalised.argmax(-1) != raw_top).all()
    assert (torch.isfinite(penalised).sum(-1) == 1).all()
