"""Plain transformers models reach SLED, DoLa and top-n-sigma through generate(custom_generate=...):
a callable, or the custom_generate/ folder every checkpoint carries (trust_remote_code=True)."""

from __future__ import annotations

import pytest
import torch
from _generation import graft, prompt_batch
from transformers import AutoModelForCausalLM
from transformers.generation.streamers import BaseStreamer

from toolkit.errors import ConfigError
from toolkit.graft.custom_generate import decoder

NEW = 8


class _Collect(BaseStreamer):
    def __init__(self):
        self.chunks = []

    def put(self, value):
        self.chunks.append(value.tolist())

    def end(self):
        self.chunks.append("end")


@pytest.fixture(scope="module")
def setup(tiny_llama_dir):
    am = graft(tiny_llama_dir)
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    return am, plain, *prompt_batch(am.tokenizer)


@pytest.mark.parametrize("method", [dict(sled={"evolution_scale": 5}), dict(dola=True),
                                    dict(sled={"evolution_rate": 2.0, "layers": [1, 3]}),
                                    dict(contrastive=True)])
def test_callable_greedy_equals_augmented_model(setup, method):
    am, plain, ids, mask = setup
    expected = am.generate(ids, mask, max_new_tokens=NEW, **method)
    got = plain.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW,
                         custom_generate=decoder(**method))
    assert torch.equal(got, expected)
    assert not torch.equal(got, am.generate(ids, mask, max_new_tokens=NEW)), "method did nothing"


def test_callable_sampled_top_n_sigma_with_sled_equals_augmented_model(setup):
    am, plain, ids, mask = setup
    expected = am.generate(ids, mask, max_new_tokens=NEW, do_sample=True, temperature=0.7,
                           top_k=20, top_n_sigma=1.0, sled=True, seed=3)
    torch.manual_seed(3)
    got = plain.generate(ids, attention_mask=mask, do_sample=True, temperature=0.7, top_k=20,
                         max_new_tokens=NEW, custom_generate=decoder(sled=True, top_n_sigma=1.0))
    assert torch.equal(got, expected)


def test_callable_keeps_streamer_and_refuses_beams(setup):
    am, plain, ids, mask = setup
    streamer = _Collect()
    out = plain.generate(ids[:1], attention_mask=mask[:1], max_new_tokens=4,
                         custom_generate=decoder(sled=True, streamer=streamer))
    assert [t for chunk in streamer.chunks[1:-1] for t in chunk] == out[0, ids.shape[1]:].tolist()
    with pytest.raises(ConfigError, match="num_beams=2 cannot compose"):
        plain.generate(ids, attention_mask=mask, num_beams=2, custom_generate=decoder(sled=True))


def test_checkpoint_folder_needs_and_works_with_trust_remote_code(setup, tmp_path):
    am, plain, ids, mask = setup
    ckpt = am.save_pretrained(tmp_path / "ckpt")
    assert (ckpt / "custom_generate" / "generate.py").is_file()
    expected = am.generate(ids, mask, max_new_tokens=NEW, sled={"evolution_scale": 5})
    with pytest.raises(ValueError, match="trust_remote_code"):
        plain.generate(ids, attention_mask=mask, max_new_tokens=NEW, custom_generate=str(ckpt),
                       sled={"evolution_scale": 5})
    streamer = _Collect()
    got = plain.generate(ids[:1], attention_mask=mask[:1], max_new_tokens=NEW,
                         custom_generate=str(ckpt), trust_remote_code=True,
                         sled={"evolution_scale": 5}, streamer=streamer)
    assert torch.equal(got, expected[:1])
    assert [t for c in streamer.chunks[1:-1] for t in c] == got[0, ids.shape[1]:].tolist()
    got = plain.generate(ids, attention_mask=mask, max_new_tokens=NEW, custom_generate=str(ckpt),
                         trust_remote_code=True, sled={"evolution_scale": 5})
    assert torch.equal(got, expected)


def test_decoder_names_the_methods_it_takes():
    with pytest.raises(ConfigError, match="adaptive_temperature is not one of them"):
        decoder(adaptive_temperature=True)
