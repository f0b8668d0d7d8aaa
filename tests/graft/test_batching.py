"""The one batch-generation helper: batched replies equal one-prompt replies, and the
tokenizer's padding side and pad token are left as they were."""

from __future__ import annotations

import torch
from _generation import PROMPTS, graft

from toolkit.graft.batching import generate_replies
from toolkit.graft.prompting import left_pad
from toolkit.methods.options import DecodingConfig

GREEDY = DecodingConfig(max_new_tokens=5)


def test_batched_equals_single_and_the_tokenizer_is_restored(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    tok = model.tokenizer
    tok.padding_side = "right"
    batched = generate_replies(model, PROMPTS, GREEDY, batch_size=3)
    assert tok.padding_side == "right"
    single = [generate_replies(model, [p], GREEDY, batch_size=1)[0] for p in PROMPTS]
    assert [r.ids for r in batched] == [r.ids for r in single]
    for reply in batched:
        assert 1 <= len(reply.ids) <= 5 and tok.eos_token_id not in reply.ids
        assert reply.text == tok.decode(reply.ids, skip_special_tokens=True)
    pad = tok.pad_token
    tok.pad_token = None
    generate_replies(model, PROMPTS[:2], GREEDY, batch_size=2)
    assert tok.pad_token is None and tok.padding_side == "right"
    tok.pad_token, tok.padding_side = pad, "left"


def test_left_pad_token_ids():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert torch.equal(mask, torch.tensor([[1, 1, 1], [0, 0, 1]]))
