"""The KV cache keyword follows the installed transformers release (toolkit.graft.kv_cache)."""

import torch
from transformers import AutoModelForCausalLM

from toolkit.graft.kv_cache import cache_kwargs, new_cache


class _OldForward(torch.nn.Module):
    def forward(self, input_ids, past_key_values=None, use_cache=None, **kwargs):
        return past_key_values


class _NewForward(torch.nn.Module):
    def forward(self, input_ids, cache=None, use_cache=None, **kwargs):
        return cache


def test_keyword_is_the_one_the_forward_declares():
    marker = object()
    assert cache_kwargs(_OldForward(), marker) == {"past_key_values": marker}
    assert cache_kwargs(_NewForward(), marker) == {"cache": marker}


def test_new_cache_is_filled_in_place_and_continues_the_sequence(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    ids = torch.tensor([[5, 9, 14, 3, 7, 21]])
    with torch.no_grad():
        whole = model(input_ids=ids).logits
        cache = new_cache(model)
        model(input_ids=ids[:, :4], use_cache=True, **cache_kwargs(model, cache))
        assert cache.get_seq_length() == 4
        rest = model(input_ids=ids[:, 4:], use_cache=True, position_ids=torch.tensor([[4, 5]]),
                     **cache_kwargs(model, cache)).logits
    torch.testing.assert_close(rest, whole[:, 4:], atol=1e-5, rtol=1e-5)
