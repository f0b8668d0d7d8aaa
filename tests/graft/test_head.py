"""AdaptiveDecoder head: zero-init uniformity, argmax/sampled choice, dtype and device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from toolkit.core.errors import ConfigError
from toolkit.graft.head import AdaptiveDecoderHead
from toolkit.methods.options import HeadConfig

D = 16


def make_head(temperatures=(0.0, 0.5, 1.0, 1.5), hidden_size=32, seed=0):
    torch.manual_seed(seed)
    return AdaptiveDecoderHead(
        D, HeadConfig(hidden_size=hidden_size, temperatures=list(temperatures))
    )


def test_architecture_and_default_config():
    head = AdaptiveDecoderHead(64, HeadConfig())
    kinds = [type(m) for m in head.mlp]
    assert kinds == [nn.Linear, nn.SiLU, nn.Linear, nn.SiLU, nn.Linear]
    shapes = [tuple(m.weight.shape) for m in head.mlp if isinstance(m, nn.Linear)]
    assert shapes == [(2048, 64), (2048, 2048), (6, 2048)]
    torch.testing.assert_close(head.temperatures, torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]))
    assert "temperatures" not in head.state_dict() and head.grid_size == 6  # config is its home


def test_untrained_head_is_exactly_uniform_and_picks_index_zero():
    head = make_head()
    h = torch.randn(5, 3, D) * 10
    assert torch.equal(head.mlp[-1].weight, torch.zeros(4, 32))
    assert torch.equal(head(h), torch.zeros(5, 3, 4))
    assert torch.equal(head.log_probs(h).exp(), torch.full((5, 3, 4), 1 / 4))
    # Ties go to the lowest index (torch.argmax returns the first maximum): temperature 0.0.
    assert torch.equal(head.choose(h[:, 0]), torch.zeros(5, dtype=torch.long))


def test_argmax_choice_follows_the_logits():
    head = make_head()
    with torch.no_grad():
        head.mlp[-1].weight[2, :] = 1.0  # index 2 wins where the last hidden layer sums > 0
        head.mlp[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.5]))
    h = torch.randn(64, D)
    logits = head(h)
    assert torch.equal(head.choose(h), logits.argmax(-1))
    assert set(head.choose(h).tolist()) == {2, 3}


def test_sampled_choice_follows_the_distribution():
    head = make_head()
    target = torch.tensor([0.1, 0.2, 0.3, 0.4])
    with torch.no_grad():
        head.mlp[-1].bias.copy_(target.log())
    h = torch.randn(4000, D)
    draws = head.choose(h, sample=True, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=4).double()
    expected = target.double() * len(h)
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 16.27, (counts, chi2)  # chi-square, 3 degrees of freedom, p = 0.001
    again = head.choose(h, sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_dtype_and_device_follow_the_input():
    head = make_head()
    with torch.no_grad():
        head.mlp[-1].weight.normal_()
    h = torch.randn(3, D, dtype=torch.float64)
    for dtype in (torch.float64, torch.bfloat16):
        out = head(h.to(dtype))
        assert out.dtype == dtype and head.log_probs(h.to(dtype)).dtype == dtype
        assert head.choose(h.to(dtype)).dtype == torch.long
    torch.testing.assert_close(head(h).float(), head(h.float()), atol=1e-5, rtol=1e-5)
    assert head.mlp[0].weight.dtype == torch.float32


def test_zero_init_still_learns():
    head = make_head()
    h = torch.randn(8, D)
    loss = -head.log_probs(h)[:, 1].mean()
    loss.backward()
    assert head.mlp[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        for p in head.parameters():
            p -= 1.0 * p.grad
    assert torch.equal(head.choose(h), torch.ones(8, dtype=torch.long))


def test_wrong_hidden_size_is_a_config_error():
    with pytest.raises(ConfigError, match="expects hidden states of size 16"):
        make_head()(torch.randn(2, 8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_input_with_cpu_generator():
    head = make_head().cuda()
    h = torch.randn(6, D, device="cuda", dtype=torch.bfloat16)
    assert head(h).device.type == "cuda" and head(h).dtype == torch.bfloat16
    idx = head.choose(h, sample=True, generator=torch.Generator().manual_seed(1))
    assert idx.device.type == "cuda" and idx.shape == (6,)
