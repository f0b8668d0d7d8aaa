"""Train the AdaptiveDecoder head with LPO and export it into an AugmentedModel checkpoint.

`train_head` builds (or reuses) the feature cache, fits `HeadLPOModule` with a Lightning
Trainer configured from `TrainerConfig`, copies the trained weights into `model.head` and saves
the AugmentedModel under `out_dir` (rank 0 only). With `strategy="ddp"` Lightning re-executes
the command line in the other ranks: call `train_head` from a script or a CLI, with resolved
paths; the cache is built by rank 0 before the launch and reused by the others.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from toolkit.errors import CheckpointError
from toolkit.graft import checkpoint
from toolkit.lpo.cache import build_cache
from toolkit.lpo.config import TrainConfig, TrainerConfig
from toolkit.lpo.module import HeadLPOModule, LPODataModule


@dataclass
class TrainResult:
    """What a `train_head` call produced."""

    out_dir: Path
    cache_file: Path
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    last_checkpoint: Path | None = None
    is_global_zero: bool = True


def make_trainer(config: TrainerConfig, root: Path, callbacks: Sequence = ()) -> L.Trainer:
    """A Lightning Trainer from the config (own sampler: `use_distributed_sampler=False`)."""
    callbacks = list(callbacks)
    if config.checkpoint_dir:
        callbacks.append(ModelCheckpoint(dirpath=config.checkpoint_dir, save_last=True,
                                         every_n_epochs=1))
    logger = CSVLogger(save_dir=str(root), name="lpo_logs") if config.logger else False
    return L.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision=config.precision,
        max_steps=config.max_steps,
        max_epochs=config.max_epochs,
        accumulate_grad_batches=config.accumulate_grad_batches,
        log_every_n_steps=config.log_every_n_steps,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=bool(config.checkpoint_dir),
        enable_progress_bar=config.progress_bar,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=str(root),
        deterministic=True,
    )


def fit_head(model, cache_file, train_config: TrainConfig, trainer_config: TrainerConfig,
             root: Path, callbacks: Sequence = ()) -> tuple[L.Trainer, HeadLPOModule]:
    """Fit a copy of `model.head` on a cache file; returns the trainer and the module."""
    L.seed_everything(trainer_config.seed, workers=True, verbose=False)
    module = HeadLPOModule(copy.deepcopy(model.head), loss=train_config.loss,
                           beta=train_config.beta, lr=trainer_config.lr,
                           weight_decay=trainer_config.weight_decay,
                           level=model.graft_config.head.level)
    data = LPODataModule(cache_file, batch_size=trainer_config.batch_size, seed=trainer_config.seed)
    trainer = make_trainer(trainer_config, root, callbacks)
    trainer.fit(module, datamodule=data, ckpt_path=trainer_config.ckpt_path)
    return trainer, module


def _outside(out_dir: Path, paths: dict[str, object]) -> None:
    """Refuse training files (logs, Lightning checkpoints, pairs) at or inside `out_dir`,
    which the export replaces as a whole."""
    for key, path in paths.items():
        if path and (Path(path).resolve() == out_dir or out_dir in Path(path).resolve().parents):
            raise CheckpointError(
                f"{key}={str(path)!r} is inside the export directory {out_dir}, which saving "
                "replaces as a whole; put it elsewhere (e.g. under work_dir)"
            )


def train_head(model, pairs_path, train_config: TrainConfig, trainer_config: TrainerConfig,
               out_dir, progress: bool = False, log_dir=None) -> TrainResult:
    """Train `model.head` on the pairs with LPO; export the AugmentedModel into `out_dir`.

    On return `model.head` holds the trained weights (in every rank). Logs go to `log_dir`
    (default: `training/` beside the pairs file). Neither they, the pairs nor
    `trainer_config.checkpoint_dir` may sit inside `out_dir`, which the export replaces.
    """
    start = time.perf_counter()
    out_dir = checkpoint.check_target(out_dir)
    root = Path(log_dir) if log_dir else Path(pairs_path).resolve().parent / "training"
    _outside(out_dir, {"pairs": pairs_path, "log_dir": root,
                       "trainer.checkpoint_dir": trainer_config.checkpoint_dir})
    cache_file = build_cache(model, pairs_path, progress=progress)
    trainer, module = fit_head(model, cache_file, train_config, trainer_config, root)
    state = trainer.strategy.lightning_module_state_dict()
    head_state = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
    if head_state:
        model.head.load_state_dict(head_state)
    if trainer.is_global_zero:
        model.save_pretrained(out_dir)
    last = Path(trainer_config.checkpoint_dir) / "last.ckpt" if trainer_config.checkpoint_dir else None
    return TrainResult(out_dir=out_dir, cache_file=Path(cache_file), losses=module.losses,
                       steps=trainer.global_step, seconds=time.perf_counter() - start,
                       last_checkpoint=last, is_global_zero=trainer.is_global_zero)
