"""Lightning pieces of LPO: a module that trains only the head, a data module over the cache.

The frozen LM is not part of the module at all: its outputs come precomputed from the feature
cache (`toolkit.lpo.cache`), so checkpoints hold only the head and the optimizer state.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import grad_norm
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from transformers import get_scheduler

from toolkit.core.errors import DataError
from toolkit.lpo.cache import load_cache
from toolkit.lpo.losses import lpo_loss, reward_metrics

# trainer.lr_scheduler -> transformers' schedule (linear warmup from 0 over warmup_steps, then
# constant, or linear / cosine decay to 0 at the last step), as TRL's Trainer builds it.
SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


class HeadLPOModule(L.LightningModule):
    """Trains an `AdaptiveDecoderHead` with an LPO loss on cached features.

    Logs the metrics under the names TRL's DPOTrainer gives them, without Lightning suffixes:
    per training step `loss`, `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`,
    `rewards/margins`, `logps/chosen`, `logps/rejected`, `learning_rate` and `grad_norm` (the head's
    gradient L2 norm before clipping); per validation epoch the same with the `eval_` prefix
    (`eval_loss`, `eval_rewards/chosen`, ...).
    """

    def __init__(self, head: torch.nn.Module, loss: str = "tokens_separate", beta: float = 1.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, level: str = "sequence",
                 loss_type: str = "sigmoid", lr_scheduler: str = "constant",
                 warmup_steps: int = 0):
        super().__init__()
        self.save_hyperparameters(ignore=["head"])
        self.head = head
        self.losses: list[float] = []

    def head_logits(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Head logits for the chosen and the rejected reply: (B, G) each, or (B, T, G)."""
        if self.hparams.level == "sequence":
            logits = self.head(batch["prompt_h"])
            return logits, logits
        return self.head(batch["chosen_h"]), self.head(batch["rejected_h"])

    def _step(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        head_c, head_r = self.head_logits(batch)
        hp = self.hparams
        out = lpo_loss(hp.loss, hp.beta, head_c, head_r, batch, loss_type=hp.loss_type)
        return out.loss, reward_metrics(out, hp.beta)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, metrics = self._step(batch)
        size = len(next(iter(batch.values())))
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=size)
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=size)
        self.losses.append(float(loss.detach()))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """Log the learning rate and the head's gradient norm (before clipping) each step."""
        norms = grad_norm(self.head, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            self.log("grad_norm", norms["grad_2.0_norm_total"], on_step=True, on_epoch=False)
        self.log("learning_rate", float(optimizer.param_groups[0]["lr"]), on_step=True,
                 on_epoch=False)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, metrics = self._step(batch)
        size = len(next(iter(batch.values())))
        self.log("eval_loss", loss, prog_bar=True, on_epoch=True, sync_dist=True,
                 batch_size=size)
        self.log_dict({f"eval_{k}": v for k, v in metrics.items()}, on_epoch=True,
                      sync_dist=True, batch_size=size)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.head.parameters(), lr=self.hparams.lr,
                                      weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_scheduler == "constant" and not self.hparams.warmup_steps:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_scheduler(SCHEDULES[self.hparams.lr_scheduler], optimizer,
                                  num_warmup_steps=self.hparams.warmup_steps,
                                  num_training_steps=total)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class CachedPairs(Dataset):
    """One dict of tensors per pair, read from a feature-cache file."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.size = next(iter(tensors.values())).shape[0]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: value[index] for name, value in self.tensors.items()}


class LPODataModule(L.LightningDataModule):
    """Batches of cached pairs. `batch_size` is per device.

    Validation pairs come from `val_cache_file` (a cache of their own), or `val_fraction` of the
    training cache, drawn with `val_seed` and never trained on; neither: no validation.
    The samplers are `DistributedSampler`s seeded with `seed` (one replica in a single process),
    so a global batch holds the same pairs whatever the number of processes. Run the Trainer
    with `use_distributed_sampler=False`.
    """

    def __init__(self, cache_file: str | Path, batch_size: int = 16, seed: int = 0,
                 val_fraction: float = 0.0, val_cache_file: str | Path | None = None,
                 val_seed: int = 0):
        super().__init__()
        self.cache_file = str(cache_file)
        self.batch_size = batch_size
        self.seed = seed
        self.val_fraction = val_fraction
        self.val_cache_file = None if val_cache_file is None else str(val_cache_file)
        self.val_seed = val_seed
        self.dataset = None
        self.val_dataset = None

    def setup(self, stage: str | None = None) -> None:
        tensors, _ = load_cache(self.cache_file)
        if self.val_cache_file is not None:
            self.val_dataset = CachedPairs(load_cache(self.val_cache_file)[0])
        elif self.val_fraction > 0:
            tensors, held_out = split_pairs(tensors, self.val_fraction, self.val_seed)
            self.val_dataset = CachedPairs(held_out)
        self.dataset = CachedPairs(tensors)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                     seed=self.seed)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return [] if self.val_dataset is None else self._loader(self.val_dataset, shuffle=False)


def split_pairs(tensors: dict[str, torch.Tensor], fraction: float, seed: int
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(train, held-out) rows of a cache: round(fraction * n) rows, at least 1 and at most
    n - 1, drawn with `seed`."""
    size = next(iter(tensors.values())).shape[0]
    if size < 2:
        raise DataError(f"cannot hold out validation pairs from {size} pair; collect more")
    count = min(size - 1, max(1, round(fraction * size)))
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    held, kept = order[:count].sort().values, order[count:].sort().values
    return ({k: v[kept] for k, v in tensors.items()}, {k: v[held] for k, v in tensors.items()})
