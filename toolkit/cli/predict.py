"""Batched generation, single-process or data-parallel through Lightning's predict loop.

Each output line is the input record plus `completion` (the reply's text), `finish_reason`
("stop": an end token ended it, "length": max_new_tokens did) and `empty` (true when the end
token came first, so the completion is "").

With several processes every rank generates its shard of the prompts and writes its own part
file; rank 0 merges the parts into one JSONL in input order.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from toolkit.core.errors import DataError
from toolkit.graft.batching import REPLY_FIELDS, generate_replies, reply_batches
from toolkit.io import json_reader, provenance, staging
from toolkit.io.files import exclusive
from toolkit.io.jsonl import append_record, dumps_line, read_records, repair_tail, split_lines
from toolkit.lpo.cache import model_fingerprint
from toolkit.methods.options import DecodingConfig


def write_jsonl(path: str | Path, records: Sequence[dict]) -> Path:
    """Write records atomically (a private temp file beside `path`, then a rename)."""
    path = Path(path)
    with staging.replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for record in records:
            out.write(dumps_line(record))
    return path


def generate_to_file(model: Any, records: Sequence[dict], texts: Sequence[str],
                     decoding: DecodingConfig, batch_size: int, output: str | Path, *,
                     field: str, prompt_format: str, force: bool = False,
                     logprobs: bool = False) -> tuple[Path, int]:
    """Write one line per prompt (the record plus the `REPLY_FIELDS`) to `output` as each
    batch finishes, under an exclusive lock; a rerun resumes after the records already there.
    `texts` are the records' `field` as the model reads them (in `prompt_format`, "chat" or
    "raw"); `logprobs`: each line also holds its tokens' log-probabilities. Returns (path,
    number of prompts done earlier)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "ab") as fh, exclusive(fh, output, "generate.output"):
        done = read_records(output)
        _check_done(output, done, records)
        provenance.check(output, _producer(model, decoding, batch_size, field, prompt_format,
                                           logprobs),
                         key="generate.force_resume", force=force)
        repair_tail(output)
        start = len(done) - len(done) % batch_size
        for first, replies in reply_batches(model, texts, decoding, batch_size, start=start,
                                            logprobs=logprobs):
            for i, reply in enumerate(replies, start=first):
                if i >= len(done):
                    append_record(fh, {**records[i], **reply.fields()})
    return output, len(done)


def _producer(model: Any, decoding: DecodingConfig, batch_size: int, field: str,
              prompt_format: str, logprobs: bool = False) -> dict:
    """What made an output file (a file made without logprobs records no such key)."""
    return {"model": model_fingerprint(model), "decoding": dataclasses.asdict(decoding),
            "batch_size": batch_size, "prompt_field": field, "prompt_format": prompt_format,
            **({"logprobs": True} if logprobs else {})}


def _check_done(output: Path, done: list, records: Sequence[dict]) -> None:
    if len(done) > len(records):
        raise DataError(
            f"{output} already holds {len(done)} completions for {len(records)} prompts; "
            "write to a new generate.output"
        )
    for number, (row, record) in enumerate(zip(done, records, strict=False), start=1):
        if not isinstance(row, dict) or {k: v for k, v in row.items()
                                         if k not in REPLY_FIELDS} != record:
            raise DataError(
                f"{output}:{number} holds the completion of another prompt than input prompt "
                f"{number}; it was written from other prompts: write to a new generate.output"
            )


def predict_parallel(
    model: Any,
    records: Sequence[dict],
    texts: Sequence[str],
    decoding: DecodingConfig,
    batch_size: int,
    trainer_config: Any,
    output: str | Path,
    *,
    field: str,
    prompt_format: str,
    logprobs: bool = False,
) -> Path | None:
    """Shard `records` over the trainer's processes; rank 0 replaces `output` as a whole (None
    elsewhere) and records its producer, so a later run resumes or refuses it like its own."""
    output = Path(output)
    writer = _PartWriter(output)
    trainer = L.Trainer(
        accelerator=trainer_config.accelerator,
        devices=trainer_config.devices,
        strategy=trainer_config.strategy,
        precision=trainer_config.precision,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[writer],
    )
    indexed = list(enumerate(texts))
    loader = DataLoader(indexed, batch_size=batch_size, shuffle=False, collate_fn=_collate)
    with closing(writer):
        trainer.predict(_Predictor(model, decoding, batch_size, logprobs), loader,
                        return_predictions=False)
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return None
        replies = _merge_parts(writer.parts, trainer.world_size)
    write_jsonl(output, [{**r, **replies[i]} for i, r in enumerate(records)])
    provenance.record(output, _producer(model, decoding, batch_size, field, prompt_format,
                                        logprobs))
    return output


def _collate(items: list[tuple[int, str]]) -> tuple[list[int], list[str]]:
    return [i for i, _ in items], [p for _, p in items]


def _merge_parts(parts: Path, world_size: int) -> dict[int, dict]:
    replies: dict[int, dict] = {}
    for rank in range(world_size):
        part = parts / f"rank{rank}.jsonl"
        for line in split_lines(part.read_text(encoding="utf-8")):
            row = json_reader.loads(line)
            replies[row.pop("index")] = row
    return replies


class _Predictor(L.LightningModule):
    """Wraps the AugmentedModel; predict_step turns a batch of prompts into completions."""

    def __init__(self, model: Any, decoding: DecodingConfig, batch_size: int,
                 logprobs: bool = False) -> None:
        super().__init__()
        self.model = model
        self.decoding = decoding
        self.batch_size = batch_size
        self.logprobs = logprobs

    def on_predict_start(self) -> None:
        """Put this rank's copy of the model on this rank's device (a no-op on CPU)."""
        self.model.base.to(self.device)

    def predict_step(self, batch: tuple[list[int], list[str]], batch_idx: int) -> list[dict]:
        indices, prompts = batch
        replies = generate_replies(self.model, prompts, self.decoding, self.batch_size,
                                   logprobs=self.logprobs)
        return [{"index": i, **r.fields()} for i, r in zip(indices, replies, strict=True)]


class _PartWriter(BasePredictionWriter):
    """Appends each batch's completions to this rank's part file, in a private folder that
    rank 0 makes beside the output (`toolkit.io.staging`) and names to the other ranks."""

    def __init__(self, output: Path) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self.parts = output  # the folder, once predicting starts
        self._folder = ExitStack()

    def on_predict_start(self, trainer, pl_module) -> None:
        made = None
        if trainer.is_global_zero:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            staging.remove_leftovers(self.output, "parts")  # of killed runs
            made = str(self._folder.enter_context(staging.locked_dir(self.output, "parts")))
        self.parts = Path(trainer.strategy.broadcast(made))
        os.close(os.open(self._file(trainer), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    def close(self) -> None:
        """Remove the parts folder (rank 0)."""
        self._folder.close()

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        with self._file(trainer).open("a", encoding="utf-8") as out:
            for row in prediction:
                out.write(dumps_line(row))

    def _file(self, trainer) -> Path:
        return self.parts / f"rank{trainer.global_rank}.jsonl"
