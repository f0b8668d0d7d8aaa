"""Train the AdaptiveDecoder head with LPO and export it into an AugmentedModel checkpoint.

`train_head` builds (or reuses) the feature cache, fits `HeadLPOModule` with a Lightning
Trainer configured from `TrainerConfig`, copies the trained weights into `model.head` and saves
the AugmentedModel under `out_dir` (rank 0 only). With `strategy="ddp"` Lightning re-executes
the command line in the other ranks: call `train_head` from a script or a CLI, with resolved
paths; the cache is built by rank 0 before the launch and reused by the others.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from toolkit.core.errors import CheckpointError
from toolkit.graft import checkpoint, prompting
from toolkit.io.jsonl import read_records
from toolkit.io.layout import inside
from toolkit.io.staging import replacing
from toolkit.lpo import resume, trainer_args
from toolkit.lpo.cache import build_cache
from toolkit.lpo.config import TrainConfig, TrainerConfig
from toolkit.lpo.loggers import make_loggers
from toolkit.lpo.module import HeadLPOModule, LPODataModule

if TYPE_CHECKING:
    from toolkit.graft.augmented import AugmentedModel


@dataclass
class TrainResult:
    """What a `train_head` call produced.

    With validation: `val_metrics` are the last validation epoch's `eval_...` values, and the
    exported head is the best one by eval_loss (`best_checkpoint`, `best_epoch`, `best_step`,
    `best_val_loss`); without, the head after the last step.
    """

    out_dir: Path
    cache_file: Path
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    last_checkpoint: Path | None = None
    is_global_zero: bool = True
    val_metrics: dict[str, float] = field(default_factory=dict)
    best_checkpoint: Path | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    best_val_loss: float | None = None

    def summary(self, loss: str) -> str:
        """One line: the loss curve, and with validation the final val accuracy and margin and
        which head was exported."""
        line = f"trained the head ({loss}): "
        if self.losses:
            line += f"loss {self.losses[0]:.4f} -> {self.losses[-1]:.4f} in "
        line += f"{self.steps} steps, {self.seconds:.1f}s"
        if self.val_metrics:
            line += (f"; final val accuracy {self.val_metrics['eval_rewards/accuracies']:.3f}, "
                     f"margin {self.val_metrics['eval_rewards/margins']:.4f}")
        if self.best_checkpoint is not None:
            line += (f"; exported the best head (epoch {self.best_epoch}, step {self.best_step}, "
                     f"eval_loss {self.best_val_loss:.4f})")
        return line


class LocalCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints (last.ckpt, best-*.ckpt) written to a private temp file beside the
    target (`toolkit.io.staging`), then renamed into place: a full disk leaves no truncated
    checkpoint, and the error names the checkpoint, not a temp file elsewhere (Lightning's own
    writer stages in /tmp)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            super().save_checkpoint(checkpoint, path, storage_options)  # refuses them
            return
        with replacing(path) as tmp, open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)
            fh.flush()
            os.fsync(fh.fileno())


def make_trainer(config: TrainerConfig, root: Path, callbacks: Sequence = (),
                 validates: bool = False) -> L.Trainer:
    """A Lightning Trainer from the config (own sampler: `use_distributed_sampler=False`).

    With `validates`, a ModelCheckpoint keeps the best epoch by eval_loss (in `checkpoint_dir`,
    else `root/checkpoints`)."""
    callbacks = list(callbacks)
    if validates:
        callbacks.append(ModelCheckpoint(
            dirpath=config.checkpoint_dir or str(root / "checkpoints"), monitor="eval_loss",
            mode="min", save_top_k=1, save_last=bool(config.checkpoint_dir),
            filename="best-{epoch}-{step}"))
    elif config.checkpoint_dir:
        callbacks.append(ModelCheckpoint(dirpath=config.checkpoint_dir, save_last=True,
                                         every_n_epochs=1))
    callbacks += trainer_args.make_callbacks(list(config.callbacks))
    loggers = make_loggers(list(config.logger), root)
    return L.Trainer(**{**_trainer_kwargs(config, validates), **config.lightning},
                     logger=loggers or False, callbacks=callbacks, plugins=[LocalCheckpointIO()],
                     use_distributed_sampler=False, default_root_dir=str(root))


def _trainer_kwargs(config: TrainerConfig, validates: bool) -> dict:
    """The Trainer arguments from the typed fields, and the toolkit's defaults for others
    (which `trainer.lightning` may change)."""
    return dict(
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision=config.precision,
        max_steps=config.max_steps,
        max_epochs=config.max_epochs,
        accumulate_grad_batches=config.accumulate_grad_batches,
        gradient_clip_val=config.gradient_clip_val,
        log_every_n_steps=config.log_every_n_steps,
        enable_checkpointing=validates or bool(config.checkpoint_dir),
        limit_val_batches=None if validates else 0,
        num_sanity_val_steps=0,
        enable_progress_bar=config.shows_progress,
        enable_model_summary=False,
        deterministic=True,
    )


def fit_head(model, cache_file, train_config: TrainConfig, trainer_config: TrainerConfig,
             root: Path, callbacks: Sequence = (), val_cache_file=None
             ) -> tuple[L.Trainer, HeadLPOModule]:
    """Fit a copy of `model.head` on a cache file; returns the trainer and the module."""
    L.seed_everything(trainer_config.seed, workers=True, verbose=False)
    module = HeadLPOModule(copy.deepcopy(model.head), loss=train_config.loss,
                           beta=train_config.beta, lr=trainer_config.lr,
                           weight_decay=trainer_config.weight_decay,
                           level=model.graft_config.head.level,
                           loss_type=train_config.loss_type,
                           lr_scheduler=trainer_config.lr_scheduler,
                           warmup_steps=trainer_config.warmup_steps)
    data = LPODataModule(cache_file, batch_size=trainer_config.batch_size, seed=trainer_config.seed,
                         val_fraction=train_config.val_fraction, val_cache_file=val_cache_file,
                         val_seed=train_config.val_seed)
    trainer = make_trainer(trainer_config, root, callbacks, validates=train_config.validates)
    ckpt_path = resume.resolve(trainer_config.ckpt_path, trainer_config.checkpoint_dir)
    if ckpt_path:
        callback = trainer.checkpoint_callback
        resume.check(ckpt_path, callback.dirpath if callback else None)
    _fit(trainer, module, data, ckpt_path)
    return trainer, module


def _fit(trainer: L.Trainer, module, data, ckpt_path) -> None:
    """trainer.fit, with Ctrl-C raised again as KeyboardInterrupt: Lightning turns it into
    exit(1) and ignores SIGINT from then on."""
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt from None


def _outside(out_dir: Path, paths: dict[str, object]) -> None:
    """Refuse training files (logs, Lightning checkpoints, pairs) at or inside `out_dir`,
    which the export replaces as a whole."""
    for key, path in paths.items():
        if path and (Path(path).resolve() == out_dir or out_dir in Path(path).resolve().parents):
            raise CheckpointError(
                f"{key}={str(path)!r} is inside the export directory {out_dir}, which saving "
                "replaces as a whole; put it elsewhere (e.g. under work_dir)"
            )


def _best(trainer: L.Trainer) -> tuple[Path | None, dict]:
    """The best checkpoint by eval_loss and its saved state (None, {} without one). Only a file
    inside the callback's own folder counts (a resumed checkpoint names its best path)."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    if not path or getattr(callback, "monitor", None) != "eval_loss":
        return None, {}
    if not inside(path, callback.dirpath):
        raise CheckpointError(
            f"the best checkpoint {path} lies outside the checkpoint folder {callback.dirpath}; "
            "resume from a checkpoint written in trainer.checkpoint_dir"
        )
    return Path(path), resume.load(path, key="best checkpoint")


def train_head(model: AugmentedModel, pairs_path: str | Path, train_config: TrainConfig,
               trainer_config: TrainerConfig, out_dir: str | Path, progress: bool = False,
               log_dir: str | Path | None = None) -> TrainResult:
    """Train `model.head` on the pairs with LPO; export the AugmentedModel into `out_dir`.

    Args:
        model: the AugmentedModel whose head trains (the base stays frozen).
        pairs_path: the pairs JSONL that `collect_pairs` wrote (its feature cache is built or
            reused beside it).
        train_config: loss, beta, validation split.
        trainer_config: Lightning Trainer settings and the optimiser's knobs.
        out_dir: the checkpoint directory the export replaces.
        progress: show progress bars.
        log_dir: logs (and, with validation, the best checkpoint); default `training/` beside
            the pairs file. Neither it, the pairs nor `trainer_config.checkpoint_dir` may sit
            inside `out_dir`.

    The checkpoint records the prompt convention of the pairs (`prompting.detect`), so
    generation from it uses the same one by default.

    Returns:
        `TrainResult`. `model.head` then holds the exported weights (in every rank): the best
        validation epoch's when validation pairs are held out, else the last step's.
    """
    start = time.perf_counter()
    out_dir = checkpoint.check_target(out_dir)
    root = Path(log_dir) if log_dir else Path(pairs_path).resolve().parent / "training"
    _outside(out_dir, {"pairs": pairs_path, "log_dir": root,
                       "trainer.checkpoint_dir": trainer_config.checkpoint_dir,
                       "train.val_pairs": train_config.val_pairs})
    cache_file = build_cache(model, pairs_path, progress=progress)
    val_cache = (build_cache(model, train_config.val_pairs, progress=progress)
                 if train_config.val_pairs else None)
    trainer, module = fit_head(model, cache_file, train_config, trainer_config, root,
                               val_cache_file=val_cache)
    best_path, best = _best(trainer)
    state = best["state_dict"] if best else trainer.strategy.lightning_module_state_dict()
    head_state = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
    if head_state:
        model.head.load_state_dict(head_state)
    if trainer.is_global_zero:
        model.prompt_format = prompting.detect(
            model.tokenizer, [p["prompt_ids"] for p in read_records(pairs_path)])
        model.save_pretrained(out_dir)
    last = Path(trainer_config.checkpoint_dir) / "last.ckpt" if trainer_config.checkpoint_dir else None
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("eval_")}
    score = trainer.checkpoint_callback.best_model_score if best else None
    return TrainResult(out_dir=out_dir, cache_file=Path(cache_file), losses=module.losses,
                       steps=trainer.global_step, seconds=time.perf_counter() - start,
                       last_checkpoint=last, is_global_zero=trainer.is_global_zero,
                       val_metrics=metrics, best_checkpoint=best_path,
                       best_epoch=best.get("epoch"), best_step=best.get("global_step"),
                       best_val_loss=None if score is None else float(score))
