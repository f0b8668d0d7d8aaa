"""Shared-prefix log-likelihoods for the lm-eval backend (`SurgeryLM`, model_arg `shared_prefix`,
on by default).

lm-eval scores a multiple-choice question as one request per choice, every choice behind the
same context, and runs each whole context + choice. Here each request's model input is built as
HFLM builds it (context + continuation, cut on the left to `max_length + 1` tokens, the last one
dropped); inputs that share the tokens before their scored positions run that prefix once into a
KV cache (`toolkit.eval.scoring.prefix_cache`), then only the scored positions, in batches of
`batch_size`, the cache copied and repeated per batch (`scoring.forward_after_prefix`). Inputs
whose prefix no other input shares are batched together as whole sequences, as HFLM runs them.

The values are HFLM's: log_softmax (in `softmax_dtype`) of the final logits, or of the method's
log-probabilities over the vocabulary (`DecodingMethod.log_probs`) at every scored position; a
request's log-likelihood is the sum at its continuation tokens and it is greedy when every
continuation token is the argmax. Equal inputs (lm-eval's one-token-continuation cache) run once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from toolkit.eval.scoring import forward_after_prefix, position_mask, prefix_cache

log = logging.getLogger(__name__)


def plan(inputs: Sequence[tuple[int, ...]], spans: dict[tuple[int, ...], int],
         batch_size: int) -> list[tuple[tuple[int, ...], list[tuple[int, ...]]]]:
    """(prefix, distinct inputs run in one pass after it), in running order.

    An input's prefix is everything before its `spans[input]` scored positions. Inputs sharing a
    prefix are one group; inputs alone with theirs join the group of the empty prefix (no cache,
    whole sequences). Each group runs longest first, cut into batches of `batch_size`.
    """
    groups: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for inp in dict.fromkeys(inputs):
        groups.setdefault(inp[: len(inp) - spans[inp]], []).append(inp)
    merged: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for prefix, members in groups.items():
        merged.setdefault(prefix if len(members) > 1 else (), []).extend(members)
    out = []
    for prefix, members in merged.items():
        members.sort(key=len, reverse=True)
        out += [(prefix, members[i : i + batch_size]) for i in range(0, len(members), batch_size)]
    return out


def scored_positions(spans: Sequence[tuple[int, int]], device: Any
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions, valid), both (B, W): for each row's (input length L, scored count n), the
    positions L-n .. L-1 that predict its continuation, padded with L-1 and marked invalid."""
    width = max(n for _, n in spans)
    positions = torch.zeros((len(spans), width), dtype=torch.long)
    valid = torch.zeros_like(positions, dtype=torch.bool)
    for row, (length, n) in enumerate(spans):
        positions[row] = length - 1
        positions[row, :n] = torch.arange(length - n, length)
        valid[row, :n] = True
    return positions.to(device), valid.to(device)


def method_values(lm: Any, logits: torch.Tensor, early: torch.Tensor | None,
                  positions: torch.Tensor, valid: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, values): the batch row of each valid position, and (M, V) the final logits there,
    in row order, replaced by the method's log-probabilities over the vocabulary when
    `lm` scores with a method (`early`: the tap's (M,N,V) at those positions)."""
    rows = torch.arange(len(positions), device=logits.device)[:, None].expand_as(positions)[valid]
    final = logits[rows, positions[valid]]
    if lm._method is not None:
        options = lm.decoding.method(lm._method.name)
        final = lm._method.log_probs(final.float(), early.to(final.device).float(),
                                     options)
    return rows, final


def _run(lm: Any, cache: Any, prefix: tuple[int, ...], chunk: list[tuple[int, ...]],
         spans: dict[tuple[int, ...], int]) -> list[torch.Tensor]:
    """Per input of `chunk`: its (span, V) log-probabilities after `prefix`."""
    suffixes = [inp[len(prefix):] for inp in chunk]
    device = lm.am.base.get_input_embeddings().weight.device
    positions, valid = scored_positions(
        [(len(suffix), spans[inp]) for inp, suffix in zip(chunk, suffixes, strict=True)], device)
    capture = lm._method is not None
    with torch.autocast(device_type=device.type, dtype=lm.mixed_precision_dtype,
                        enabled=lm.mixed_precision_dtype is not None):
        mask = position_mask(positions, valid, max(len(s) for s in suffixes)) if capture \
            else None
        logits, early = forward_after_prefix(lm.am, cache, len(prefix), suffixes, capture, mask)
        _, values = method_values(lm, logits, early, positions, valid)
        values = F.log_softmax(values, dim=-1, dtype=lm.softmax_dtype)
    return list(values.split([spans[inp] for inp in chunk]))


def loglikelihoods(lm: Any, requests: Sequence[tuple[Any, list[int], list[int]]],
                   batch_size: int, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
    """HFLM's `_loglikelihood_tokens(requests)` with shared prefixes run once, in request order."""
    inputs = [tuple((ctx + cont)[-(lm.max_length + 1):][:-1]) for _, ctx, cont in requests]
    cut = sum(len(ctx) + len(cont) > lm.max_length + 1 for _, ctx, cont in requests)
    if cut:
        log.warning("%d of %d requests are longer than the model's maximum length (%d); their "
                    "contexts are cut on the left", cut, len(requests), lm.max_length)
    spans: dict[tuple[int, ...], int] = {}
    waiting: dict[tuple[int, ...], list[int]] = {}
    for i, (inp, (_, _, cont)) in enumerate(zip(inputs, requests, strict=True)):
        spans[inp] = max(spans.get(inp, 0), len(cont))
        waiting.setdefault(inp, []).append(i)
    res: list[tuple[float, bool] | None] = [None] * len(requests)
    cached: tuple[tuple[int, ...] | None, Any] = (None, None)
    pbar = tqdm(total=len(requests), disable=disable_tqdm or lm.rank != 0,
                desc="Running loglikelihood requests (shared prefixes)")
    with torch.no_grad():
        for prefix, chunk in plan(inputs, spans, batch_size):
            if cached[0] != prefix:
                cached = (prefix, prefix_cache(lm.am, prefix))
            for inp, values in zip(chunk, _run(lm, cached[1], prefix, chunk, spans),
                                   strict=True):
                for i in waiting[inp]:
                    res[i] = _answer(values, requests[i][2])
                    if requests[i][0] is not None:
                        lm.cache_hook.add_partial("loglikelihood", requests[i][0], res[i])
                    pbar.update(1)
    pbar.close()
    return res


def _answer(values: torch.Tensor, cont: list[int]) -> tuple[float, bool]:
    """(summed log-probability of `cont`, whether each token is the argmax) from the last
    len(cont) rows of `values`."""
    values = values[-len(cont):]
    tokens = torch.tensor(cont, device=values.device)
    greedy = bool((values.argmax(-1) == tokens).all())
    return float(values.gather(-1, tokens[:, None]).sum()), greedy
