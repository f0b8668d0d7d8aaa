"""Batched generation, single-process or data-parallel through Lightning's predict loop.

With several processes every rank generates its shard of the prompts and writes its own part
file; rank 0 merges the parts into one JSONL in input order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from toolkit import provenance
from toolkit.errors import DataError
from toolkit.files import exclusive
from toolkit.jsonl import append_record, jsonl_values, read_records, read_text, repair_tail
from toolkit.lpo.cache import model_fingerprint
from toolkit.options import DecodingConfig


def read_prompt_records(path: str | Path, field: str) -> list[dict]:
    """One dict per line of a JSONL file; each must hold a non-empty string under `field`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"prompt file not found: {path}")
    records = []
    for number, record in jsonl_values(read_text(path).splitlines(), path):
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise DataError(f"{path}:{number}: no string field {field!r} in this line")
        if not record[field]:
            raise DataError(f"{path}:{number}: the prompt is empty; give some text to continue")
        records.append(record)
    if not records:
        raise DataError(f"{path} holds no prompts")
    return records


def write_jsonl(path: str | Path, records: Sequence[dict]) -> Path:
    """Write records atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _prepare(model: Any) -> Any:
    tokenizer = model.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def complete_batches(
    model: Any,
    prompts: Sequence[str],
    decoding: DecodingConfig,
    batch_size: int,
    streamer: Any = None,
    device: torch.device | None = None,
    start: int = 0,
) -> Iterator[tuple[int, list[str]]]:
    """(index of the batch's first prompt, its continuations) per batch, from prompt `start`
    (a multiple of `batch_size`, so that a resumed run sees the batches of an uninterrupted
    one). Every prompt is checked against the model's positions before any is generated."""
    tokenizer = _prepare(model)
    device = device or model.base.get_output_embeddings().weight.device
    check_lengths(model, [len(ids) for ids in tokenizer(list(prompts[start:]))["input_ids"]],
                  decoding, first=start)
    for first in range(start, len(prompts), batch_size):
        batch = tokenizer(
            list(prompts[first : first + batch_size]), return_tensors="pt", padding=True
        )
        input_ids = batch["input_ids"].to(device)
        with torch.no_grad():
            out = model.generate(
                input_ids, batch["attention_mask"].to(device), decoding=decoding, streamer=streamer
            )
        yield first, tokenizer.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=True)


def complete(
    model: Any,
    prompts: Sequence[str],
    decoding: DecodingConfig,
    batch_size: int,
    streamer: Any = None,
    device: torch.device | None = None,
) -> list[str]:
    """The generated continuation (prompt excluded) of every prompt, in order."""
    texts: list[str] = []
    for _, batch in complete_batches(model, prompts, decoding, batch_size, streamer, device):
        texts += batch
    return texts


def check_lengths(model: Any, lengths: Sequence[int], decoding: DecodingConfig,
                  first: int = 0) -> None:
    """Refuse empty prompts and prompts that with max_new_tokens pass the model's positions."""
    limit = getattr(model.base.config.get_text_config(), "max_position_embeddings", None)
    for number, length in enumerate(lengths, start=first + 1):
        if length == 0:
            raise DataError(f"prompt {number} is empty; give some text to continue")
        if limit and length + decoding.max_new_tokens > limit:
            raise DataError(
                f"prompt {number} has {length} tokens; with max_new_tokens="
                f"{decoding.max_new_tokens} that passes the model's {limit} positions: shorten "
                "the prompt or lower decoding.max_new_tokens"
            )


def generate_to_file(model: Any, records: Sequence[dict], field: str, decoding: DecodingConfig,
                     batch_size: int, output: str | Path, force: bool = False) -> tuple[Path, int]:
    """Write one line per prompt (the record plus `completion`) to `output` as each batch
    finishes, under an exclusive lock; a rerun resumes after the records already there.
    Returns (path, number of prompts done earlier)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "ab") as fh, exclusive(fh, output, "generate.output"):
        repair_tail(output)
        done = read_records(output)
        _check_done(output, done, records)
        producer = {"model": model_fingerprint(model), "decoding": dataclasses.asdict(decoding),
                    "batch_size": batch_size, "prompt_field": field}
        provenance.check(output, producer, has_records=bool(done), key="generate.force_resume",
                         force=force)
        start = len(done) - len(done) % batch_size
        prompts = [r[field] for r in records]
        for first, texts in complete_batches(model, prompts, decoding, batch_size, start=start):
            for i, text in enumerate(texts, start=first):
                if i >= len(done):
                    append_record(fh, dict(records[i], completion=text))
    return output, len(done)


def _check_done(output: Path, done: list, records: Sequence[dict]) -> None:
    if len(done) > len(records):
        raise DataError(
            f"{output} already holds {len(done)} completions for {len(records)} prompts; "
            "write to a new generate.output"
        )
    for number, (row, record) in enumerate(zip(done, records, strict=False), start=1):
        if not isinstance(row, dict) or {k: v for k, v in row.items() if k != "completion"} != record:
            raise DataError(
                f"{output}:{number} holds the completion of another prompt than input prompt "
                f"{number}; it was written from other prompts: write to a new generate.output"
            )


def predict_parallel(
    model: Any,
    records: Sequence[dict],
    prompt_field: str,
    decoding: DecodingConfig,
    batch_size: int,
    trainer_config: Any,
    output: str | Path,
) -> Path | None:
    """Shard `records` over the trainer's processes; rank 0 writes `output` (None elsewhere)."""
    output = Path(output)
    parts = output.parent / f".{output.name}.parts"
    trainer = L.Trainer(
        accelerator=trainer_config.accelerator,
        devices=trainer_config.devices,
        strategy=trainer_config.strategy,
        precision=trainer_config.precision,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[_PartWriter(parts)],
    )
    indexed = [(i, r[prompt_field]) for i, r in enumerate(records)]
    loader = DataLoader(indexed, batch_size=batch_size, shuffle=False, collate_fn=_collate)
    trainer.predict(_Predictor(model, decoding, batch_size), loader, return_predictions=False)
    trainer.strategy.barrier()
    if not trainer.is_global_zero:
        return None
    completions = _merge_parts(parts, trainer.world_size)
    merged = [dict(r, completion=completions[i]) for i, r in enumerate(records)]
    return write_jsonl(output, merged)


def _collate(items: list[tuple[int, str]]) -> tuple[list[int], list[str]]:
    return [i for i, _ in items], [p for _, p in items]


def _merge_parts(parts: Path, world_size: int) -> dict[int, str]:
    completions: dict[int, str] = {}
    for rank in range(world_size):
        part = parts / f"rank{rank}.jsonl"
        for line in part.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            completions[row["index"]] = row["completion"]
        part.unlink()
    parts.rmdir()
    return completions


class _Predictor(L.LightningModule):
    """Wraps the AugmentedModel; predict_step turns a batch of prompts into completions."""

    def __init__(self, model: Any, decoding: DecodingConfig, batch_size: int) -> None:
        super().__init__()
        self.model = model
        self.decoding = decoding
        self.batch_size = batch_size

    def on_predict_start(self) -> None:
        """Put this rank's copy of the model on this rank's device (a no-op on CPU)."""
        self.model.base.to(self.device)

    def predict_step(self, batch: tuple[list[int], list[str]], batch_idx: int) -> list[dict]:
        indices, prompts = batch
        texts = complete(self.model, prompts, self.decoding, self.batch_size, device=self.device)
        return [{"index": i, "completion": t} for i, t in zip(indices, texts, strict=True)]


class _PartWriter(BasePredictionWriter):
    """Appends each batch's completions to this rank's part file."""

    def __init__(self, parts: Path) -> None:
        super().__init__(write_interval="batch")
        self.parts = parts

    def on_predict_start(self, trainer, pl_module) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        self._file(trainer).write_text("", encoding="utf-8")

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        with self._file(trainer).open("a", encoding="utf-8") as out:
            for row in prediction:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")

    def _file(self, trainer) -> Path:
        return self.parts / f"rank{trainer.global_rank}.jsonl"
