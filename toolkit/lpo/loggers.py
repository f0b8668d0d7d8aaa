"""Lightning loggers named by `trainer.logger`: csv, tensorboard, wandb, mlflow (or a list).

tensorboard, wandb and mlflow are optional extras (`pip install -e ".[tensorboard]"`, `.[wandb]`,
`.[mlflow]`); `TrainerConfig` refuses a logger whose package is missing before any model loads.
wandb follows its own settings (`WANDB_MODE=offline` for no network); mlflow writes to
`<root>/mlruns` unless `MLFLOW_TRACKING_URI` is set.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import (
    CSVLogger,
    Logger,
    MLFlowLogger,
    TensorBoardLogger,
    WandbLogger,
)

PROJECT = "model-surgery"


def make_loggers(names: list[str], root: Path, run_name: str = "lpo") -> list[Logger]:
    """One Lightning logger per name, all writing under `root`."""
    made: list[Logger] = []
    for name in names:
        if name == "csv":
            made.append(CSVLogger(save_dir=str(root), name="lpo_logs"))
        elif name == "tensorboard":
            made.append(TensorBoardLogger(save_dir=str(root), name="tensorboard"))
        elif name == "wandb":
            made.append(WandbLogger(save_dir=str(root), project=PROJECT, name=run_name))
        elif name == "mlflow":
            uri = os.environ.get("MLFLOW_TRACKING_URI") or (root / "mlruns").resolve().as_uri()
            made.append(MLFlowLogger(experiment_name=PROJECT, run_name=run_name,
                                     tracking_uri=uri))
        else:
            raise ValueError(f"unknown logger {name!r}")
    return made
