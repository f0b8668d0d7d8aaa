"""The one batch-generation loop: prompts in, replies out.

`reply_batches` encodes prompts batch by batch, left padded (`toolkit.graft.prompting`): text,
or token ids given directly (a JSONL record's `prompt_ids`), through `AugmentedModel.generate`, and says of every reply why it ended: an end token
("stop"; an empty reply means it came first) or `max_new_tokens` ("length").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from toolkit.core.errors import DataError
from toolkit.graft.hf_generate import eos_ids
from toolkit.graft.prompting import left_pad, padding_id, token_ids

STOP, LENGTH = "stop", "length"
REPLY_FIELDS = ("completion", "finish_reason", "empty", "prompt_tokens", "completion_tokens",
                "temperature", "logprobs")
EMPTY_NOTE = "(empty reply: the end token came first)"


@dataclass
class Reply:
    """One generated reply: its text, its token ids (up to, not including, eos / pad), why it
    ended ("stop": an end token, "length": max_new_tokens), its prompt's token count, and when
    recorded: the adaptive head's temperature (one value for a sequence-level head, one per
    token of `ids` for a token-level head) and the log-probability of each token of `ids` in
    the distribution it was drawn from (after every method, filter and temperature)."""

    text: str
    ids: list[int]
    finish_reason: str = LENGTH
    prompt_tokens: int = 0
    temperature: float | list[float] | None = None
    logprobs: list[float] | None = None

    @property
    def empty(self) -> bool:
        """True when the end token came first (no reply token at all)."""
        return not self.ids

    def shown(self) -> str:
        """The text for a terminal: the reply, or a note saying it is empty and why."""
        return EMPTY_NOTE if self.empty else self.text

    @property
    def completion_tokens(self) -> int:
        """Tokens generated: the reply's, and the end token when one ended it."""
        return len(self.ids) + (self.finish_reason == STOP)

    def fields(self) -> dict[str, Any]:
        """The JSONL fields of the reply (`REPLY_FIELDS`; `logprobs` only when recorded)."""
        values = (self.text, self.finish_reason, self.empty, self.prompt_tokens,
                  self.completion_tokens, self.temperature, self.logprobs)
        return {k: v for k, v in zip(REPLY_FIELDS, values, strict=True)
                if k != "logprobs" or v is not None}


def reply_batches(model: Any, prompts: Sequence[str | Sequence[int]], decoding: Any,
                  batch_size: int, *,
                  start: int = 0, streamer: Any = None, progress: bool = False,
                  desc: str = "generating", logprobs: bool = False
                  ) -> Iterator[tuple[int, list[Reply]]]:
    """(index of the batch's first prompt, its replies) per batch of `batch_size` prompts.

    Args:
        model: an AugmentedModel with a tokenizer.
        prompts: prompt texts, as the model reads them (`toolkit.graft.prompting.render`),
            or prompts as token ids (read as given: no template, no BOS added).
        decoding: the `DecodingConfig` to generate with.
        batch_size: prompts per `generate` call (left padded).
        start: the first prompt (a multiple of `batch_size` keeps a resumed run's batches
            those of an uninterrupted one).
        streamer: a transformers streamer (for one prompt at a time).
        progress: show a progress bar titled `desc`.
        logprobs: record each reply token's log-probability (`Reply.logprobs`).

    Returns:
        An iterator of (first index, one `Reply` per prompt of the batch: the token ids up to
        the first eos / pad, their text and why the reply ended).
    """
    if start >= len(prompts):
        return
    tok = model.tokenizer
    rows = prompt_rows(model, prompts[start:], first=start)
    check_lengths(model, [len(r) for r in rows], decoding.max_new_tokens, first=start)
    stops = {*eos_ids({}, model.base.generation_config, tok), padding_id(tok)}
    firsts = range(start, len(prompts), batch_size)
    for first in tqdm(firsts, desc=desc, disable=not progress):
        batch = rows[first - start : first - start + batch_size]
        ids, mask = left_pad(batch, padding_id(tok))
        scores = dict(output_scores=True, return_dict_in_generate=True) if logprobs else {}
        with torch.no_grad():
            out = model.generate(ids, mask, decoding=decoding, streamer=streamer,
                                 return_records=True, **scores)
        new = out.sequences[:, ids.shape[1]:]
        lps = _logprobs(out.generate_output.scores, new) if logprobs else None
        replies = [_reply(tok, row, stops) for row in new.tolist()]
        for i, reply in enumerate(replies):
            reply.prompt_tokens = len(batch[i])
            reply.temperature = _temperature(model, out.temperature, i, len(reply.ids))
            reply.logprobs = None if lps is None else lps[i][: len(reply.ids)]
        yield first, replies


def _logprobs(scores: Sequence[torch.Tensor], new: torch.Tensor) -> list[list[float]]:
    """(B rows of T floats) each generated token's log-probability under the step's final
    scores (B, V), the distribution it was drawn from."""
    steps = [torch.log_softmax(step.float(), dim=-1).gather(1, new[:, t : t + 1].to(step.device))
             for t, step in enumerate(scores)]
    return torch.cat(steps, dim=1).cpu().tolist()


def _temperature(model: Any, temps: torch.Tensor | None, row: int,
                 length: int) -> float | list[float] | None:
    """The adaptive head's temperature for a reply: one value (sequence level) or one per reply
    token (token level); None when the head was off."""
    if temps is None:
        return None
    values = temps[row].float().cpu().tolist()
    if model.graft_config.head.level == "sequence":
        return values[0]
    return values[:length]


def prompt_rows(model: Any, prompts: Sequence[str | Sequence[int]],
                first: int = 0) -> list[list[int]]:
    """Each prompt's token ids: a text's as it tokenizes (one BOS), token ids as given, each
    inside the model's vocabulary (prompt numbers counted from 1, after `first`)."""
    rows = []
    for number, prompt in enumerate(prompts, start=first + 1):
        if isinstance(prompt, str):
            rows.append(token_ids(model.tokenizer, prompt))
            continue
        check_vocabulary(prompt, model.vocab_size, f"prompt {number}")
        rows.append(list(prompt))
    return rows


def check_vocabulary(ids: Sequence[int], vocab_size: int | None, where: str) -> None:
    """Refuse token ids given directly (`prompt_ids`) outside the vocabulary (unknown: none)."""
    bad = [i for i in ids if vocab_size and not 0 <= i < vocab_size]
    if bad:
        raise DataError(
            f"{where}: prompt_ids holds token id {bad[0]}, outside the model's vocabulary "
            f"(0..{vocab_size - 1}); the ids were made for another tokenizer")


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


def _reply(tok: Any, row: list[int], stops: set[int]) -> Reply:
    for j, token in enumerate(row):
        if token in stops:
            return Reply(tok.decode(row[:j], skip_special_tokens=True), row[:j], STOP)
    return Reply(tok.decode(row, skip_special_tokens=True), row, LENGTH)
