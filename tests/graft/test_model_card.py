"""A checkpoint carries a model card, as PEFT writes one: huggingface_hub reads its
`base_model`, `library_name` and tags; editing it leaves the checkpoint loadable."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub import ModelCard

from toolkit.graft.augmented import AugmentedModel
from toolkit.methods.options import GraftConfig, HeadConfig, with_overrides


@pytest.fixture(scope="module")
def am(tiny_llama_dir):
    am = AugmentedModel.graft(str(tiny_llama_dir), GraftConfig(head=HeadConfig(hidden_size=8)))
    am.decoding = with_overrides(am.decoding, sled=dict(evolution_scale=7))
    return am


def test_the_card_names_the_library_the_methods_and_how_to_load(am, tmp_path):
    ckpt = am.save_pretrained(tmp_path / "ckpt")
    card = ModelCard.load(ckpt / "README.md")
    assert card.data.library_name == "model-surgery-decoding"
    assert card.data.pipeline_tag == "text-generation"
    assert card.data.tags == ["model-surgery", "sled"]
    assert card.data.base_model is None  # a local base: no name others can use
    assert "- SLED alpha=2 K=7" in card.text
    assert 'AugmentedModel.from_pretrained("THIS_FOLDER_OR_REPO_ID")' in card.text
    assert "the local base model at `../" in card.text
    assert "Licence: the base model's; see its own model card" in card.text


def test_a_preset_base_names_its_hub_id_and_its_terms():
    from toolkit.graft import model_card

    assert model_card.base_model("preset:smollm2-135m-instruct") == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model_card._licence("preset:smollm2-135m-instruct") == "the base model's, Apache-2.0"
    assert model_card._licence("preset:gemma3-270m").startswith(
        "the base model's, Gemma Terms of Use (not open source). Gemma is provided under")
    assert model_card.base_model("path:../base") is None and model_card.base_model("self") is None


def test_a_hub_base_is_the_cards_base_model(am, tmp_path):
    on_hub = AugmentedModel(am.base, am.graft_config, am.tokenizer, decoding=am.decoding,
                            base_reference="HuggingFaceTB/SmolLM2-135M-Instruct")
    ckpt = on_hub.save_pretrained(tmp_path / "ckpt")
    card = ModelCard.load(ckpt / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.text.lstrip().startswith("# A decoding graft on HuggingFaceTB/SmolLM2-135M")


def test_an_edited_card_leaves_the_checkpoint_loadable_and_is_kept_by_the_next_save(am,
                                                                                    tmp_path):
    ckpt = am.save_pretrained(tmp_path / "ckpt")
    mine = "---\nlicense: mit\n---\nMy own words.\n"
    (ckpt / "README.md").write_text(mine)
    again = AugmentedModel.from_pretrained(ckpt)
    for ours, theirs in zip(am.head.state_dict().values(), again.head.state_dict().values(),
                            strict=True):
        assert torch.equal(ours, theirs)
    again.save_pretrained(ckpt)
    assert (ckpt / "README.md").read_text() == mine  # a person's card is never replaced
    again.save_pretrained(ckpt)
    assert (ckpt / "README.md").read_text() == mine


def test_an_untouched_card_is_written_afresh(am, tmp_path):
    ckpt = am.save_pretrained(tmp_path / "ckpt")
    am.decoding = with_overrides(am.decoding, sled=dict(enabled=False), dola=dict(enabled=True))
    try:
        am.save_pretrained(ckpt)
    finally:
        am.decoding = with_overrides(am.decoding, sled=dict(enabled=True),
                                     dola=dict(enabled=False))
    assert ModelCard.load(ckpt / "README.md").data.tags == ["model-surgery", "dola"]
