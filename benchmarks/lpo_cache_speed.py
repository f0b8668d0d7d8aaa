"""Speed of an LPO training epoch with the frozen-LM feature cache vs without it.

Without the cache, every training step runs the frozen LM on the batch's pairs (hidden states
and final logits, as `toolkit.lpo.cache.compute_features` does) before the head's step; with
it, a step reads precomputed tensors. Both run through the same Lightning Trainer on the
synthetic task's tiny Llama. Writes a JSON file and prints it.

    OMP_NUM_THREADS=1 python benchmarks/lpo_cache_speed.py --out bench_results/lpo_cache_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from toolkit.lpo import pipeline
from toolkit.lpo.cache import build_cache, compute_features
from toolkit.lpo.config import TrainConfig, TrainerConfig
from toolkit.lpo.losses import lpo_loss
from toolkit.lpo.module import HeadLPOModule
from toolkit.lpo.pairs import read_pairs
from toolkit.lpo.train import fit_head, make_trainer


class EpochTimer(L.Callback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.seconds.append(time.perf_counter() - self._start)


class LiveFeatureModule(HeadLPOModule):
    """The head module fed raw pairs: the frozen LM runs inside every training step."""

    def __init__(self, model, **kw):
        super().__init__(model.head, **kw)
        self.lm = model  # an AugmentedModel, not an nn.Module: not part of the parameters

    def training_step(self, batch, batch_idx):
        features = compute_features(self.lm, batch, self.hparams.level)
        head_c, head_r = self.head_logits(features)
        out = lpo_loss(self.hparams.loss, self.hparams.beta, head_c, head_r, features)
        self.losses.append(float(out.loss.detach()))
        return out.loss


def _cached_epochs(task, cache_file, args, root) -> list[float]:
    timer = EpochTimer()
    config = TrainerConfig(accelerator="cpu", max_epochs=args.epochs, batch_size=args.batch_size)
    fit_head(task.model, cache_file, TrainConfig(loss=args.loss), config, root / "cached",
             callbacks=[timer])
    return timer.seconds


def _uncached_epochs(task, args, root) -> list[float]:
    timer = EpochTimer()
    L.seed_everything(0, verbose=False)
    module = LiveFeatureModule(task.model, loss=args.loss, level=args.level)
    pairs = read_pairs(task.pairs_path)
    loader = DataLoader(pairs, batch_size=args.batch_size, shuffle=True, collate_fn=list)
    config = TrainerConfig(accelerator="cpu", max_epochs=args.epochs)
    trainer = make_trainer(config, root / "live", callbacks=[timer])
    trainer.fit(module, train_dataloaders=loader)
    return timer.seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_results/lpo_cache_speed.json")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--level", default="sequence", choices=["sequence", "token"])
    parser.add_argument("--loss", default="latent")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        task = pipeline.prepare_synthetic(root, level=args.level, train_prompts=args.prompts,
                                          eval_prompts=2)
        start = time.perf_counter()
        cache_file = build_cache(task.model, task.pairs_path, progress=False)
        cache_seconds = time.perf_counter() - start
        cached = _cached_epochs(task, cache_file, args, root)
        uncached = _uncached_epochs(task, args, root)
    report = {
        "device": f"cpu ({platform.processor() or platform.machine()}), "
                  f"torch threads {torch.get_num_threads()}",
        "model": "tiny random Llama (d=64, 4 layers, vocab 300), head hidden 64",
        "level": args.level, "loss": args.loss, "pairs": task.stats.pairs,
        "batch_size": args.batch_size, "epochs": args.epochs,
        "cache_build_seconds": cache_seconds,
        "epoch_seconds_cached": statistics.median(cached),
        "epoch_seconds_uncached": statistics.median(uncached),
        "speedup": statistics.median(uncached) / statistics.median(cached),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
