"""The one LPO pipeline: prompts -> preference pairs -> trained head -> checkpoint.

`task_prompts` gives the prompt records of a `DataConfig` (a JSONL file, or a built-in task:
the synthetic task of `toolkit.lpo.synthetic` or `toolkit.lpo.arith_writing`) and `collect`
writes their pairs into `data.pairs`; `toolkit.lpo.train.train_head` fits the head on that file
and exports the checkpoint. The CLI (`collect`, `train`, `run`), the synthetic experiment
(`prepare_synthetic`, `train_and_evaluate`, `run_synthetic`), the tests and the benchmarks all
go through them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.core.errors import DataError
from toolkit.io.jsonl import read_prompts
from toolkit.lpo import synthetic
from toolkit.lpo.collect import CollectStats, collect_pairs
from toolkit.lpo.config import (
    CollectConfig,
    DataConfig,
    SyntheticConfig,
    TrainConfig,
    TrainerConfig,
)
from toolkit.lpo.rewards import Reward
from toolkit.lpo.train import train_head

if TYPE_CHECKING:
    from toolkit.graft.augmented import AugmentedModel

# Prompt seeds of the synthetic task's splits, as offsets from `data.synthetic.seed` (the
# markers use the seed itself): training and held-out prompts never share a random stream.
SPLIT_OFFSETS = {"train": 1, "eval": 2}


def split_seed(seed: int, split: str) -> int:
    """The prompt seed of a synthetic split ("train" or "eval")."""
    return seed + SPLIT_OFFSETS[split]


def task_prompts(model: AugmentedModel | None, data: DataConfig, max_new_tokens: int,
                 split: str = "train") -> tuple[list[dict], Reward | None]:
    """The prompt records of the task and the reward that replaces `collect.reward`, if any.

    Args:
        model: the AugmentedModel (the built-in tasks build their prompts with it; a prompt
            file needs none).
        data: `data.prompts` (JSONL, `prompt_field`, `template`) or, when unset, the built-in
            task `data.task` (synthetic, or arith_writing: `toolkit.lpo.arith_writing`); text
            prompts follow `data.chat_template` (`AugmentedModel.render_prompts`).
        max_new_tokens: reply length of the synthetic task's greedy references.
        split: "train" (collection) or "eval" (held-out prompts; built-in tasks only).

    Returns:
        (records, reward): the synthetic task's own reward, or None for a prompt file.
    """
    if data.prompts is None and data.task == "arith_writing":
        from toolkit.lpo import arith_writing

        a = data.arith_writing
        size = a.train_per_kind if split == "train" else a.eval_per_kind
        records = arith_writing.make_prompts(model.tokenizer, size, split, a.seed,
                                             held_out=a.eval_per_kind, chat=_chat(model, data))
        return records, arith_writing.ArithWritingReward(a.ngram, a.repetition_penalty)
    if data.prompts is None:
        s = data.synthetic
        size = s.train_prompts if split == "train" else s.eval_prompts
        markers = synthetic.pick_markers(model, s.prompt_length, seed=s.seed)
        records = synthetic.make_prompts(model, size, split_seed(s.seed, split), markers,
                                         prompt_length=s.prompt_length,
                                         max_new_tokens=max_new_tokens)
        return records, synthetic.SyntheticReward(model)
    records = _file_prompts(data)
    if model is not None and model.tokenizer is not None:  # prompt_ids alone are used as given
        texts = iter(model.render_prompts([r["prompt"] for r in records if "prompt" in r],
                                          data.chat_template))
        records = [{**r, "prompt": next(texts)} if "prompt" in r else r for r in records]
    return records, None


def _chat(model: AugmentedModel, data: DataConfig) -> bool:
    from toolkit.graft.prompting import CHAT

    return model.tokenizer is not None and model.prompt_convention(data.chat_template) == CHAT


def _file_prompts(data: DataConfig) -> list[dict]:
    records = []
    rows = read_prompts(data.prompts, data.prompt_field, token_ids=True, key="data.prompts")
    for number, (_, row) in enumerate(rows, start=1):
        try:
            prompt = data.template.format(**row) if data.template else row.get(data.prompt_field)
        except (KeyError, IndexError) as err:
            raise DataError(
                f"{data.prompts}: prompt {number} has no field {err} that data.template uses"
            ) from None
        records.append({**row, "prompt": prompt} if prompt is not None else dict(row))
    return records


def collect(model: AugmentedModel, data: DataConfig, config: CollectConfig,
            progress: bool = True) -> CollectStats:
    """Collect the task's pairs into `data.pairs` (resumable).

    Args:
        model: the AugmentedModel whose head draws the temperatures.
        data: the prompts (`task_prompts`) and the pairs file.
        config: the `collect` section (replies per prompt, batching, reward, seed).
        progress: show a progress bar.

    Returns:
        The counts of this run (`CollectStats`).
    """
    records, reward = task_prompts(model, data, config.max_new_tokens)
    return collect_pairs(model, records, config, data.pairs, reward=reward, progress=progress)


@dataclass
class SyntheticTask:
    """A prepared synthetic experiment: the model, its data, held-out prompts and pairs."""

    model: AugmentedModel
    data: DataConfig
    eval_set: list
    stats: CollectStats
    initial_head: dict

    @property
    def pairs_path(self) -> Path:
        return Path(self.data.pairs)


def prepare_synthetic(out_dir: str | Path, *, level: str = "sequence", train_prompts: int = 256,
                      eval_prompts: int = 64, num_replies: int = 8, max_new_tokens: int = 12,
                      head_hidden: int = 64, seed: int = 0,
                      progress: bool = False) -> SyntheticTask:
    """Build the tiny model (saved under `out_dir/base`) and collect the synthetic task's pairs
    into `out_dir/pairs.jsonl`; the held-out prompts are kept for `train_and_evaluate`."""
    out_dir = Path(out_dir).resolve()
    model = synthetic.build_task_model(out_dir / "base", level, head_hidden, seed)
    data = DataConfig(pairs=str(out_dir / "pairs.jsonl"), synthetic=SyntheticConfig(
        train_prompts=train_prompts, eval_prompts=eval_prompts, seed=seed))
    config = CollectConfig(num_replies=num_replies, prompts_per_batch=64,
                           max_new_tokens=max_new_tokens, seed=seed)
    stats = collect(model, data, config, progress=progress)
    eval_set, _ = task_prompts(model, data, max_new_tokens, split="eval")
    initial = {k: v.clone() for k, v in model.head.state_dict().items()}
    return SyntheticTask(model, data, eval_set, stats, initial)


def train_and_evaluate(task: SyntheticTask, out_dir: str | Path, *,
                       loss: str = "tokens_separate", max_epochs: int = 5, batch_size: int = 16,
                       lr: float = 1e-3, weight_decay: float = 0.0, beta: float = 1.0,
                       seed: int = 0, progress: bool = False) -> dict:
    """Train the task's head from its initial weights with `loss`, export it to `out_dir`, and
    evaluate it on the held-out prompts (`synthetic.evaluate_head`, with EDT tuned on the
    training prompts as the untrained baseline); returns the figures."""
    task.model.head.load_state_dict(task.initial_head)
    trainer = TrainerConfig(accelerator="cpu", max_epochs=max_epochs, batch_size=batch_size,
                            lr=lr, weight_decay=weight_decay, seed=seed, progress_bar=progress)
    result = train_head(task.model, task.data.pairs, TrainConfig(loss=loss, beta=beta), trainer,
                        out_dir, progress=progress)
    return {
        "loss": loss, "level": task.model.graft_config.head.level,
        "pairs": task.stats.pairs, "dropped": task.stats.dropped,
        "losses": result.losses, "steps": result.steps, "train_seconds": result.seconds,
        "checkpoint": str(result.out_dir),
        "after": synthetic.evaluate_head(task.model, task.eval_set, seed=seed,
                                         edt=_tuned_edt(task, seed)),
    }


def _tuned_edt(task: SyntheticTask, seed: int) -> dict:
    """EDT's settings tuned on the task's training prompts (never the held-out ones)."""
    train, _ = task_prompts(task.model, task.data, task.eval_set[0]["max_new_tokens"])
    return synthetic.tune_synthetic_edt(task.model, train, seed)


_PREPARE_KEYS = ("train_prompts", "eval_prompts", "num_replies", "max_new_tokens", "head_hidden")


def run_synthetic(out_dir: str | Path, *, loss: str = "tokens_separate", level: str = "sequence",
                  seed: int = 0, progress: bool = False, **sizes: Any) -> dict:
    """prepare -> train -> evaluate on the tiny model; figures (with the untrained head's as
    `before`) also in `out_dir/figures.json`. `sizes`: keywords of `prepare_synthetic` and
    `train_and_evaluate`."""
    out_dir = Path(out_dir).resolve()
    prep = {k: sizes.pop(k) for k in list(sizes) if k in _PREPARE_KEYS}
    task = prepare_synthetic(out_dir, level=level, seed=seed, progress=progress, **prep)
    before = synthetic.evaluate_head(task.model, task.eval_set, seed=seed)
    figures = train_and_evaluate(task, out_dir / "checkpoint", loss=loss, seed=seed,
                                 progress=progress, **sizes)
    figures["before"] = before
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=2))
    return figures
