"""The one batch-generation loop: prompts in, replies out, the tokenizer's padding restored.

`generate_replies` left pads text prompts batch by batch through `AugmentedModel.generate`;
`left_pad` does the same for prompts given as token ids. Both leave the tokenizer as they
found it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from toolkit.errors import DataError


@dataclass
class Reply:
    """One generated reply: its text and its token ids (up to, not including, eos / pad)."""

    text: str
    ids: list[int]


@contextmanager
def left_padded(tokenizer: Any) -> Iterator[Any]:
    """The tokenizer set to pad on the left (with eos as pad when it has no pad token),
    restored on exit."""
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if pad is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = side
        if pad is None:
            tokenizer.pad_token = None


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, longest), for prompts given as token ids."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def reply_batches(model: Any, prompts: Sequence[str], decoding: Any, batch_size: int, *,
                  start: int = 0, streamer: Any = None, progress: bool = False,
                  desc: str = "generating") -> Iterator[tuple[int, list[Reply]]]:
    """(index of the batch's first prompt, its replies) per batch of `batch_size` prompts.

    Args:
        model: an AugmentedModel with a tokenizer.
        prompts: prompt texts.
        decoding: the `DecodingConfig` to generate with.
        batch_size: prompts per `generate` call (left padded).
        start: the first prompt (a multiple of `batch_size` keeps a resumed run's batches
            those of an uninterrupted one).
        streamer: a transformers streamer (for one prompt at a time).
        progress: show a progress bar titled `desc`.

    Returns:
        An iterator of (first index, one `Reply` per prompt of the batch: the token ids up to
        the first eos / pad and their text); the tokenizer is restored when it ends.
    """
    if start >= len(prompts):
        return
    with left_padded(model.tokenizer) as tok:
        lengths = [len(ids) for ids in tok(list(prompts[start:]))["input_ids"]]
        check_lengths(model, lengths, decoding.max_new_tokens, first=start)
        stops = {t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None}
        firsts = range(start, len(prompts), batch_size)
        for first in tqdm(firsts, desc=desc, disable=not progress):
            enc = tok(list(prompts[first : first + batch_size]), return_tensors="pt",
                      padding=True)
            with torch.no_grad():
                out = model.generate(enc["input_ids"], enc["attention_mask"], decoding=decoding,
                                     streamer=streamer)
            rows = [_until_stop(row, stops) for row in out[:, enc["input_ids"].shape[1] :].tolist()]
            yield first, [Reply(tok.decode(ids, skip_special_tokens=True), ids) for ids in rows]


def check_lengths(model: Any, lengths: Sequence[int], max_new_tokens: int,
                  first: int = 0) -> None:
    """Before generating anything: refuse empty prompts and prompts that with
    `max_new_tokens` pass the model's positions (prompt numbers counted from 1)."""
    limit = model.max_positions
    for number, length in enumerate(lengths, start=first + 1):
        if length == 0:
            raise DataError(f"prompt {number} is empty; give some text to continue")
        if limit and length + max_new_tokens > limit:
            raise DataError(
                f"prompt {number} has {length} tokens; with max_new_tokens={max_new_tokens} that "
                f"passes the model's {limit} positions: shorten the prompt or lower "
                "decoding.max_new_tokens"
            )


def generate_replies(model: Any, prompts: Sequence[str], decoding: Any, batch_size: int,
                     **kwargs: Any) -> list[Reply]:
    """The reply to every prompt, in order (`reply_batches` flattened; same arguments)."""
    return [r for _, batch in reply_batches(model, prompts, decoding, batch_size, **kwargs)
            for r in batch]


def _until_stop(row: list[int], stops: set[int]) -> list[int]:
    for j, token in enumerate(row):
        if token in stops:
            return row[:j]
    return row
