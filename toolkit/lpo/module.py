"""Lightning pieces of LPO: a module that trains only the head, a data module over the cache.

The frozen LM is not part of the module at all: its outputs come precomputed from the feature
cache (`toolkit.lpo.cache`), so checkpoints hold only the head and the optimizer state.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from toolkit.lpo.cache import load_cache
from toolkit.lpo.losses import lpo_loss


class HeadLPOModule(L.LightningModule):
    """Trains an `AdaptiveDecoderHead` with an LPO loss on cached features."""

    def __init__(self, head: torch.nn.Module, loss: str = "tokens_separate", beta: float = 1.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, level: str = "sequence"):
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

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        head_c, head_r = self.head_logits(batch)
        out = lpo_loss(self.hparams.loss, self.hparams.beta, head_c, head_r, batch)
        self.log("train/loss", out.loss, prog_bar=True)
        self.log("train/margin", out.margin.mean())
        self.losses.append(float(out.loss.detach()))
        return out.loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.head.parameters(), lr=self.hparams.lr,
                                 weight_decay=self.hparams.weight_decay)


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

    The sampler is always a `DistributedSampler` seeded with `seed` (one replica in a single
    process), so a global batch holds the same pairs whatever the number of processes. Run the
    Trainer with `use_distributed_sampler=False`.
    """

    def __init__(self, cache_file: str | Path, batch_size: int = 16, seed: int = 0):
        super().__init__()
        self.cache_file = str(cache_file)
        self.batch_size = batch_size
        self.seed = seed
        self.dataset = None

    def setup(self, stage: str | None = None) -> None:
        tensors, _ = load_cache(self.cache_file)
        self.dataset = CachedPairs(tensors)

    def train_dataloader(self) -> DataLoader:
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = DistributedSampler(self.dataset, num_replicas=world, rank=rank, shuffle=True,
                                     seed=self.seed)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler)
