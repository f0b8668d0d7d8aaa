"""The trainer section as a Lightning user expects it: any Trainer argument (flat, as
LightningCLI takes it), callbacks from the recipe, `ckpt_path: last`, the learning rate and the
gradient norm logged, mixed precision, a progress bar on a terminal, one vocabulary."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
from _lpo import metrics, sequence_pairs, small_model, trainer_config

from toolkit.core.errors import ConfigError
from toolkit.lpo.config import TrainConfig
from toolkit.lpo.train import make_trainer, train_head
from toolkit.recipes.load import load_recipe

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"


def _trainer(**kw):
    return trainer_config(**{"max_epochs": 1, **kw})


@pytest.fixture(scope="module")
def pairs_file(tiny_llama_dir, tmp_path_factory):
    return sequence_pairs(tiny_llama_dir, tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


def _recipe(*overrides):
    return load_recipe(RECIPE, list(overrides))


def test_any_lightning_argument_reaches_the_trainer(tmp_path):
    trainer = _recipe("trainer.num_nodes=1", "trainer.check_val_every_n_epoch=3",
                      "trainer.lightning.val_check_interval=0.5",
                      "trainer.accelerator=cpu").trainer
    assert trainer.lightning == {"num_nodes": 1, "check_val_every_n_epoch": 3,
                                 "val_check_interval": 0.5}
    made = make_trainer(trainer, tmp_path)
    assert (made.num_nodes, made.check_val_every_n_epoch, made.val_check_interval) == (1, 3, 0.5)


@pytest.mark.parametrize("override, line", [
    ("trainer.learning_rate=0.1", "trainer.learning_rate is TRL's name; this section uses "
                                  "Lightning's and torch.optim's: trainer.lr"),
    ("trainer.max_grad_norm=1", "trainer.max_grad_norm is TRL's name; this section uses "
                                "Lightning's and torch.optim's: trainer.gradient_clip_val"),
    ("trainer.plugins=[]", "trainer.plugins is set by the toolkit: checkpoints are written "
                           "through the toolkit's own plugin"),
    ("trainer.num_node=2", "unknown key 'trainer.num_node'; did you mean 'trainer.num_nodes' "
                           "(a Lightning Trainer argument)?"),
    ("trainer.lightning.max_epochs=2", "trainer.lightning.max_epochs is a field of its own; "
                                       "set trainer.max_epochs"),
    ("trainer.lightning.foo=1", "trainer.lightning.foo is not a Lightning Trainer argument; "
                                "valid: num_nodes, "),
    ("trainer.strategy=deepspeed", "trainer.strategy=deepspeed needs the deepspeed package"),
    ("trainer.ckpt_path=last", "trainer.ckpt_path=last resumes from trainer.checkpoint_dir's "
                               "last.ckpt; set trainer.checkpoint_dir"),
    ("trainer.callbacks=[os.path]", "trainer.callbacks[0]: os.path is not a Lightning Callback "
                                    "class"),
    ("trainer.callbacks=[{class_path: lightning.pytorch.callbacks.EarlyStopping, init_args: "
     "{monitr: x}}]", "trainer.callbacks[0]: lightning.pytorch.callbacks.EarlyStopping"
                      "({'monitr': 'x'}) failed (TypeError: "),
], ids=lambda v: v[:40])
def test_wrong_trainer_keys_are_one_line(override, line):
    if override.startswith("trainer.strategy=deepspeed"):
        pytest.importorskip("lightning")
        import importlib.util
        if importlib.util.find_spec("deepspeed"):
            pytest.skip("deepspeed is installed here")
    with pytest.raises(ConfigError) as err:
        _recipe(override)
    assert str(err.value).startswith(line)


def test_callbacks_from_the_recipe_and_lr_and_grad_norm_logged(tiny_llama_dir, pairs_file,
                                                               tmp_path, monkeypatch):
    (tmp_path / "my_callbacks.py").write_text(
        "import lightning as L\n\nclass Count(L.Callback):\n    seen = []\n\n"
        "    def __init__(self, label):\n        self.label = label\n\n"
        "    def on_train_batch_end(self, trainer, *args):\n"
        "        Count.seen.append((self.label, trainer.global_step))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = _trainer(logger="csv", lr_scheduler="linear", warmup_steps=2, max_epochs=2,
                      callbacks=[{"class_path": "my_callbacks.Count",
                                  "init_args": {"label": "a"}}])
    train_head(small_model(tiny_llama_dir), pairs_file, TrainConfig(), config, tmp_path / "out",
               log_dir=tmp_path / "logs")
    import my_callbacks

    assert my_callbacks.Count.seen == [("a", step) for step in range(1, 9)]
    rows = [r for r in metrics(tmp_path / "logs") if r.get("learning_rate")]
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates[:3] == pytest.approx([0.0, 5e-3, 1e-2])  # linear warmup over 2 steps
    norms = [float(r["grad_norm"]) for r in rows]
    assert len(norms) == 8 and all(math.isfinite(n) and n > 0 for n in norms)


def test_ckpt_path_last_resumes_and_starts_fresh_without_one(tiny_llama_dir, pairs_file,
                                                              tmp_path, caplog):
    ckpts = tmp_path / "ckpts"
    first = _trainer(checkpoint_dir=str(ckpts), ckpt_path="last")
    with caplog.at_level(logging.WARNING, logger="toolkit.lpo.resume"):
        result = train_head(small_model(tiny_llama_dir), pairs_file, TrainConfig(), first,
                            tmp_path / "out1", log_dir=tmp_path / "logs1")
    assert f"trainer.ckpt_path=last: no {ckpts / 'last.ckpt'} yet; training starts from " \
           "the beginning" in caplog.text
    assert result.steps == 4 and (ckpts / "last.ckpt").is_file()
    again = _trainer(checkpoint_dir=str(ckpts), ckpt_path="last", max_epochs=2)
    resumed = train_head(small_model(tiny_llama_dir), pairs_file, TrainConfig(), again,
                         tmp_path / "out2", log_dir=tmp_path / "logs2")
    assert resumed.steps == 8 and len(resumed.losses) == 4  # the second epoch only


def test_bf16_mixed_precision_trains_on_cpu(tiny_llama_dir, pairs_file, tmp_path):
    result = train_head(small_model(tiny_llama_dir), pairs_file, TrainConfig(),
                        _trainer(precision="bf16-mixed"), tmp_path / "out",
                        log_dir=tmp_path / "logs")
    assert result.steps == 4 and all(math.isfinite(v) for v in result.losses)


def test_progress_bar_follows_the_terminal(monkeypatch, tmp_path):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert make_trainer(_trainer(), tmp_path).progress_bar_callback is not None
    assert make_trainer(_trainer(progress_bar=False), tmp_path).progress_bar_callback is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert make_trainer(_trainer(), tmp_path).progress_bar_callback is None
