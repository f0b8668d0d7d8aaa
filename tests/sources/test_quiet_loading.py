"""Loading a model through the toolkit shows no transformers weight-loading bars (it says
itself what it loads), and leaves transformers' setting as it found it."""

from __future__ import annotations

import pytest
from transformers.utils import logging as hf_logging

from toolkit.graft.augmented import AugmentedModel


@pytest.fixture
def bars_on():
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    yield
    if not shown:
        hf_logging.disable_progress_bar()


def test_no_weight_loading_bars_and_the_setting_restored(tiny_llama_dir, capfd, bars_on):
    AugmentedModel.graft(str(tiny_llama_dir))
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))  # transformers' own: its bars
    assert "Loading weights" in capfd.readouterr().err
