"""Lightning training as Lightning users expect: held-out validation with TRL's DPO metric names,
the best head (by eval_loss) exported, loggers, LR schedule, gradient clipping, the summary."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _lpo import metrics, sequence_pairs, small_model, trainer_config

from toolkit.core.errors import ConfigError
from toolkit.graft.augmented import AugmentedModel
from toolkit.lpo import cache
from toolkit.lpo.config import TrainConfig, TrainerConfig
from toolkit.lpo.module import split_pairs
from toolkit.lpo.train import fit_head, make_trainer, train_head

# As TRL's DPOTrainer logs them: training under these names, evaluation with `eval_` before.
TRL_NAMES = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
             "rewards/margins", "logps/chosen", "logps/rejected")


def _trainer(**kw):
    return trainer_config(**{"max_epochs": 3, **kw})


@pytest.fixture(scope="module")
def pairs_file(tiny_llama_dir, tmp_path_factory):
    return sequence_pairs(tiny_llama_dir, tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


@pytest.fixture(scope="module")
def swapped_file(pairs_file):
    """The same pairs with chosen and rejected swapped: training on pairs_file makes the
    validation loss on these rise epoch after epoch, so the best epoch is the first."""
    out = pairs_file.with_name("swapped.jsonl")
    rows = []
    for line in pairs_file.read_text().splitlines():
        pair = json.loads(line)
        for name in ("ids", "tau"):
            pair[f"chosen_{name}"], pair[f"rejected_{name}"] = (pair[f"rejected_{name}"],
                                                                  pair[f"chosen_{name}"])
        rows.append(json.dumps(pair))
    out.write_text("\n".join(rows) + "\n")
    return out


def test_val_fraction_logs_trl_names_and_summary(tiny_llama_dir, pairs_file, tmp_path):
    model = small_model(tiny_llama_dir)
    result = train_head(model, pairs_file, TrainConfig(val_fraction=0.25),
                        _trainer(logger=["csv", "tensorboard"]), tmp_path / "run",
                        log_dir=tmp_path / "logs")
    rows = metrics(tmp_path / "logs")
    columns = set(rows[0])
    assert {*TRL_NAMES, *(f"eval_{name}" for name in TRL_NAMES)} <= columns
    assert not [c for c in columns if c.endswith(("_step", "_epoch"))], sorted(columns)
    val_losses = [float(r["eval_loss"]) for r in rows if r["eval_loss"]]
    assert len(val_losses) == 3  # one per epoch, on 4 held-out pairs
    assert result.steps == 9  # 12 training pairs, batches of 4, 3 epochs
    assert list((tmp_path / "logs" / "tensorboard").rglob("events.out.tfevents*"))
    acc, margin = (result.val_metrics[f"eval_{k}"] for k in ("rewards/accuracies",
                                                              "rewards/margins"))
    assert acc in (0.0, 0.25, 0.5, 0.75, 1.0)
    line = result.summary("tokens_separate, sigmoid")
    assert f"final val accuracy {acc:.3f}, margin {margin:.4f}" in line and "\n" not in line
    assert result.best_val_loss == pytest.approx(min(val_losses), abs=1e-6)


def test_best_head_by_val_loss_is_exported(tiny_llama_dir, pairs_file, swapped_file, tmp_path):
    model = small_model(tiny_llama_dir)
    result = train_head(model, pairs_file, TrainConfig(val_pairs=str(swapped_file)),
                        _trainer(logger="csv", max_epochs=4), tmp_path / "run",
                        log_dir=tmp_path / "logs")
    val_losses = [float(r["eval_loss"]) for r in metrics(tmp_path / "logs") if r["eval_loss"]]
    assert len(val_losses) == 4 and val_losses == sorted(val_losses), "val loss should rise"
    assert (result.best_epoch, result.best_step) == (0, 4)
    assert result.best_val_loss == pytest.approx(val_losses[0], abs=1e-6)
    assert "exported the best head (epoch 0, step 4, eval_loss" in result.summary("x")
    saved = torch.load(result.best_checkpoint, weights_only=True)["state_dict"]
    exported = AugmentedModel.from_pretrained(result.out_dir).head.state_dict()
    assert all(torch.equal(exported[k], saved[f"head.{k}"]) for k in exported)
    # ... and it is not the head of the last step
    last = small_model(tiny_llama_dir)
    trainer, module = fit_head(last, cache.build_cache(last, pairs_file, progress=False),
                               TrainConfig(), _trainer(max_epochs=4), tmp_path / "plain")
    assert any(not torch.equal(exported[k], v) for k, v in module.head.state_dict().items())


def test_split_pairs_is_seeded_and_disjoint():
    tensors = {"x": torch.arange(10), "y": torch.arange(10) * 2}
    train, held = split_pairs(tensors, 0.3, seed=0)
    assert len(held["x"]) == 3 and len(train["x"]) == 7
    assert sorted(train["x"].tolist() + held["x"].tolist()) == list(range(10))
    assert torch.equal(held["y"], held["x"] * 2)
    assert torch.equal(split_pairs(tensors, 0.3, seed=0)[1]["x"], held["x"])
    assert not torch.equal(split_pairs(tensors, 0.3, seed=1)[1]["x"], held["x"])


# transformers' get_*_schedule_with_warmup, warmup 2 of 8 steps: 0, 1/2, then 1 decaying to 0.
SCHEDULE = {
    "linear": [0, 0.5, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6],
    "cosine": [0, 0.5, 1, (1 + math.cos(math.pi / 6)) / 2, 0.75, 0.5, 0.25,
               (1 + math.cos(5 * math.pi / 6)) / 2],
    "constant": [0, 0.5, 1, 1, 1, 1, 1, 1],
}


@pytest.mark.parametrize("kind", sorted(SCHEDULE))
def test_scheduler_and_clipping_reach_the_trainer(tiny_llama_dir, pairs_file, tmp_path, kind):
    import lightning as L

    class Rates(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, *args):
            self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    model = small_model(tiny_llama_dir)
    config = _trainer(lr_scheduler=kind, warmup_steps=2, gradient_clip_val=0.5, max_epochs=2)
    file = cache.build_cache(model, pairs_file, progress=False)
    rates = Rates()
    trainer, _ = fit_head(model, file, TrainConfig(), config, tmp_path, callbacks=[rates])
    assert trainer.gradient_clip_val == 0.5
    assert trainer.global_step == 8
    assert rates.seen == pytest.approx([1e-2 * f for f in SCHEDULE[kind]], abs=1e-12)
    assert make_trainer(_trainer(), tmp_path).gradient_clip_val is None


def test_logger_choices_and_missing_extras(monkeypatch):
    assert TrainerConfig(logger=True).logger == ["csv"]
    assert TrainerConfig(logger=["csv", "tensorboard"]).logger == ["csv", "tensorboard"]
    with pytest.raises(ConfigError, match="trainer.logger.*neptune"):
        TrainerConfig(logger="neptune")
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("wandb", "mlflow") else real(name, *a))
    for name in ("wandb", "mlflow"):
        with pytest.raises(ConfigError, match=rf'needs the {name} package.*\.\[{name}\]'):
            TrainerConfig(logger=["csv", name])


def test_validation_options_are_checked():
    with pytest.raises(ConfigError, match="train.val_fraction=1.0"):
        TrainConfig(val_fraction=1.0)
    with pytest.raises(ConfigError, match="both set"):
        TrainConfig(val_fraction=0.1, val_pairs="v.jsonl")
    with pytest.raises(ConfigError, match="train.loss_type"):
        TrainConfig(loss_type="dpo")
