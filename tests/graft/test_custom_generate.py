"""Plain transformers models reach SLED, DoLa and top-n-sigma through generate(custom_generate=...):
a callable, or the custom_generate/ folder every checkpoint carries (trust_remote_code=True)."""

from __future__ import annotations

import pytest
import torch
from _generation import graft, prompt_batch
from transformers import AutoModelForCausalLM
from transformers.generation.streamers import BaseStreamer

from toolkit.core.errors import ConfigError
from toolkit.graft.augmented import AugmentedModel
from toolkit.graft.custom_generate import decoder
from toolkit.methods.options import DecodingConfig, GraftConfig, HeadConfig, with_overrides

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


SAVED_SLED = {"evolution_rate": 2.5, "evolution_scale": 7}
SAVED = dict(sled=SAVED_SLED, top_n_sigma=1.2, do_sample=True, temperature=0.8, top_k=0,
             top_p=0.95, repetition_penalty=1.2, max_new_tokens=6)


@pytest.fixture(scope="module")
def saved(tiny_llama_dir, tmp_path_factory):
    """A checkpoint with non-default candidate layers, early_exit_norm and decoding options,
    loaded back; and unpadded prompts (transformers' repetition penalty counts padding)."""
    am = AugmentedModel.graft(str(tiny_llama_dir), GraftConfig(
        layers=[1, 2], early_exit_norm=True, head=HeadConfig(hidden_size=16)))
    am.decoding = with_overrides(DecodingConfig(), **SAVED)
    ckpt = am.save_pretrained(tmp_path_factory.mktemp("saved") / "ckpt")
    ids = torch.randint(3, 300, (2, 7), generator=torch.Generator().manual_seed(6))
    return ckpt, AugmentedModel.from_pretrained(ckpt), ids


def _folder(plain, ckpt, ids, seed=3, **kwargs):
    torch.manual_seed(seed)
    return plain.generate(ids, custom_generate=str(ckpt), trust_remote_code=True, **kwargs)


def test_checkpoint_folder_uses_the_saved_graft_and_decoding(setup, saved):
    plain = setup[1]
    ckpt, loaded, ids = saved
    expected = loaded.generate(ids, seed=3)
    got = _folder(plain, ckpt, ids)
    assert torch.equal(got, expected) and got.shape[1] == ids.shape[1] + 6
    torch.manual_seed(3)
    settings = {k: v for k, v in SAVED.items() if k not in ("sled", "top_n_sigma")}
    unsaved_graft = plain.generate(ids, **settings, custom_generate=decoder(
        sled=SAVED_SLED, top_n_sigma=1.2))
    assert not torch.equal(got, unsaved_graft), "layers [1, 2] and the norm changed nothing"


def test_checkpoint_folder_keywords_override_the_saved_options(setup, saved):
    plain = setup[1]
    ckpt, loaded, ids = saved
    for change in (dict(sled=False), dict(dola=True, sled=False, do_sample=False),
                   dict(temperature=0.5, max_new_tokens=4)):
        assert torch.equal(_folder(plain, ckpt, ids, **change),
                           loaded.generate(ids, seed=3, **change)), change


def test_a_logits_method_asked_for_replaces_the_saved_one(setup, saved):
    """The checkpoint saved SLED: dola=True decodes DoLa, through the folder and through
    AugmentedModel.generate alike, as if the call had also said sled=False."""
    plain = setup[1]
    ckpt, loaded, ids = saved
    dola = loaded.generate(ids, seed=3, dola=True, sled=False, do_sample=False)
    assert torch.equal(loaded.generate(ids, seed=3, dola=True, do_sample=False), dola)
    assert torch.equal(_folder(plain, ckpt, ids, dola=True, do_sample=False), dola)
    assert not torch.equal(loaded.generate(ids, seed=3, do_sample=False), dola)


def test_checkpoint_folder_refuses_a_saved_adaptive_head(setup, tiny_llama_dir, tmp_path):
    plain, ids = setup[1], setup[2]
    am = graft(tiny_llama_dir)
    am.decoding = with_overrides(DecodingConfig(), adaptive_temperature=True)
    ckpt = am.save_pretrained(tmp_path / "adaptive")
    with pytest.raises(ConfigError, match="adaptive temperature head.*AugmentedModel"):
        _folder(plain, ckpt, ids[:1])
    assert _folder(plain, ckpt, ids[:1], adaptive_temperature=False).shape[0] == 1


def test_decoder_names_the_methods_it_takes():
    with pytest.raises(ConfigError, match="adaptive_temperature is not one of them"):
        decoder(adaptive_temperature=True)
