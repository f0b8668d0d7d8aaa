"""Helpers of the LPO tests: the toy reward, a small head on the tiny model, a tiny trainer
config, sequence-level pairs, and the CSV logger's rows."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from toolkit.graft.augmented import AugmentedModel
from toolkit.lpo.collect import collect_pairs
from toolkit.lpo.config import CollectConfig, TrainerConfig
from toolkit.methods.options import GraftConfig, HeadConfig


def by_sum(prompts, replies, records):
    """A reward that orders replies by their token ids (so pairs are never all ties)."""
    return [float(sum(r["reply_ids"]) % 101) for r in records]


def small_model(path, level: str = "sequence") -> AugmentedModel:
    """The tiny model at `path` with a 16-unit head, seeded."""
    torch.manual_seed(0)
    return AugmentedModel.graft(path, GraftConfig(head=HeadConfig(hidden_size=16, level=level)))


def trainer_config(**kw) -> TrainerConfig:
    """A CPU trainer, batch 4, lr 1e-2, seed 0, a log row each step; `kw` over those."""
    return TrainerConfig(**{**dict(accelerator="cpu", batch_size=4, lr=1e-2, seed=0,
                                   log_every_n_steps=1), **kw})


def sequence_pairs(model_dir, out: Path) -> Path:
    """16 pairs of 4-token prompts (4 replies of 4 tokens each, `by_sum`) written to `out`."""
    model = small_model(model_dir)
    gen = torch.Generator().manual_seed(2)
    prompts = [{"id": str(i), "prompt_ids": torch.randint(3, 300, (4,), generator=gen).tolist()}
               for i in range(16)]
    config = CollectConfig(num_replies=4, prompts_per_batch=16, max_new_tokens=4)
    assert collect_pairs(model, prompts, config, out, reward=by_sum, progress=False).pairs == 16
    return out


def metrics(root: Path) -> list[dict]:
    """The rows of the one metrics.csv the CSV logger wrote under `root`."""
    (path,) = list(root.rglob("metrics.csv"))
    with open(path) as f:
        return list(csv.DictReader(f))
