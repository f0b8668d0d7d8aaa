"""Teacher-forced answer scoring for greedy and every method with a scoring function
(docs/methods.md sections 2-3).

A (prompt, continuation) pair is scored as the sum, over the continuation's tokens, of a value
at the token: greedy = log-softmax log-prob of the final layer; a method's mode = its
registered `score` function (`toolkit.methods`) with its options from the `DecodingConfig`:
DoLa = the contrast log_softmax(z_L) - log_softmax(z_j) with the premature layer j chosen per
position by JSD, tokens outside the relative-top set valued `relative_top_value`; SLED = every
position evolved independently, then the raw evolved value or its log_softmax.

Pairs with the same prompt share it (`shared_prefix`, the default): the prompt but its last
token runs once into a KV cache (transformers' own cache, copied and repeated per batch), then
each batch runs only the last prompt token and the answers, right padded; every scored
position is in that pass, so the tap sees it. Without it, every whole sequence runs (right or
left padded). Position ids come from the mask, so padding never changes a score, and the two
paths give the same scores (to float rounding); all modes come from the same pass.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from toolkit import methods
from toolkit.core.errors import DataError
from toolkit.graft.kv_cache import cache_kwargs, new_cache
from toolkit.methods.options import DecodingConfig


def encode_pair(tokenizer: Any, prompt: str, continuation: str) -> tuple[list[int], int]:
    """Token ids of prompt + continuation and the index of the first continuation token.

    Like the reference, the whole text is tokenized and the prompt's own tokenization is its
    prefix; when the two disagree at the boundary (a merge across it), the continuation is
    tokenized on its own and appended, so the scored tokens are exactly the continuation's.
    """
    prefix = tokenizer(prompt)["input_ids"]
    if not prefix:
        raise DataError(f"prompt {prompt!r} has no tokens; nothing predicts the first answer token")
    full = tokenizer(prompt + continuation)["input_ids"]
    if len(full) > len(prefix) and full[: len(prefix)] == prefix:
        return list(full), len(prefix)
    cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    if not cont:
        raise DataError(f"continuation {continuation!r} has no tokens; it cannot be scored")
    return list(prefix) + list(cont), len(prefix)


def greedy_values(final: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(final)[target] per row: final (M,V), targets (M,) -> (M,)."""
    return final.float().log_softmax(-1).gather(-1, targets[:, None])[:, 0]


def _pad(encoded: Sequence[tuple[list[int], int]], pad_id: int, side: str, device) -> dict:
    """Padded inputs plus, per row, the positions predicting each answer token."""
    width = max(len(ids) for ids, _ in encoded)
    span = max(len(ids) - start for ids, start in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    positions = torch.zeros((len(encoded), span), dtype=torch.long)
    targets = torch.zeros_like(positions)
    valid = torch.zeros_like(positions, dtype=torch.bool)
    for row, (ids, start) in enumerate(encoded):
        offset = width - len(ids) if side == "left" else 0
        input_ids[row, offset : offset + len(ids)] = torch.tensor(ids)
        mask[row, offset : offset + len(ids)] = 1
        n = len(ids) - start
        positions[row] = offset + start - 1
        positions[row, :n] = offset + torch.arange(start - 1, len(ids) - 1)
        targets[row, :n] = torch.tensor(ids[start:])
        valid[row, :n] = True
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    batch = dict(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                 positions=positions, targets=targets, valid=valid)
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def score_batch(
    am: Any, encoded: Sequence[tuple[list[int], int]], modes: Sequence[str],
    decoding: DecodingConfig, padding_side: str = "right",
) -> dict[str, list[float]]:
    """Scores of a few encoded pairs in one forward pass over each whole sequence, every mode."""
    base = am.base
    device = base.get_input_embeddings().weight.device
    b = _pad(encoded, _pad_id(am), padding_side, device)
    width = b["input_ids"].shape[1]
    keep = width - int(b["positions"].min())
    with _capture(am.tap, modes):
        out = base(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                   position_ids=b["position_ids"], logits_to_keep=keep, use_cache=False)
        rows = torch.arange(len(encoded), device=device)[:, None]
        final = out.logits[rows, b["positions"] - (width - keep)]
        early = _early(am.tap, modes, position_mask(b["positions"], b["valid"], width))
    return _mode_scores(final, early, b["valid"], b["targets"], modes, decoding)


def position_mask(positions: torch.Tensor, valid: torch.Tensor, width: int) -> torch.Tensor:
    """(B,width) bool, True at each valid entry of `positions` (B,P) long: the tap's
    `early_logits` at the mask lists them in the order of `positions[valid]`, because positions
    ascend along each row."""
    mask = torch.zeros((positions.shape[0], width), dtype=torch.bool, device=positions.device)
    rows, cols = valid.nonzero(as_tuple=True)
    mask[rows, positions[rows, cols]] = True
    return mask


@torch.no_grad()
def prefix_cache(am: Any, prefix: Sequence[int]) -> Any:
    """The KV cache of `prefix` (one row), or None for an empty prefix."""
    if not prefix:
        return None
    device = am.base.get_input_embeddings().weight.device
    ids = torch.tensor([list(prefix)], device=device)
    cache = new_cache(am.base)
    am.base(input_ids=ids, use_cache=True, logits_to_keep=1, **cache_kwargs(am.base, cache))
    return cache


@torch.no_grad()
def forward_after_prefix(
    am: Any, cache: Any, prefix_len: int, suffixes: Sequence[Sequence[int]], capture: bool,
    positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One forward pass over `suffixes` (right padded) after the first `prefix_len` tokens held
    in `cache` (`prefix_cache`; None for no prefix), the cache copied and repeated per row.

    Returns the logits (B,W,V) and, with `capture`, the tap's early logits (M,N,V) at the True
    entries of `positions` (B,W) bool (`position_mask`), (B,W,N,V) at every suffix position when
    it is None; without `capture`, None.
    """
    device = am.base.get_input_embeddings().weight.device
    width = max(len(s) for s in suffixes)
    input_ids = torch.full((len(suffixes), width), _pad_id(am), dtype=torch.long)
    real = torch.zeros_like(input_ids)
    for row, suffix in enumerate(suffixes):
        input_ids[row, : len(suffix)] = torch.tensor(list(suffix))
        real[row, : len(suffix)] = 1
    mask = torch.cat([torch.ones(len(suffixes), prefix_len, dtype=torch.long), real], -1)
    position_ids = prefix_len + torch.arange(width).expand(len(suffixes), -1)
    past = None
    if cache is not None:
        past = copy.deepcopy(cache)
        past.batch_repeat_interleave(len(suffixes))
    tap = am.tap.capture(last_only=False) if capture else contextlib.nullcontext()
    with tap:
        out = am.base(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                      position_ids=position_ids.to(device), use_cache=past is not None,
                      **cache_kwargs(am.base, past))
        early = am.tap.early_logits(positions=positions) if capture else None
    return out.logits, early


def _score_after_prefix(
    am: Any, cache: Any, prefix_len: int, encoded: Sequence[tuple[list[int], int]],
    modes: Sequence[str], decoding: DecodingConfig,
) -> dict[str, list[float]]:
    """Scores of a few pairs whose first `prefix_len` tokens are in `cache` (`prefix_cache`),
    in one forward pass over the rest: the last prompt token (whose position predicts the
    first answer token, so the tap sees it too) and the answer tokens, right padded."""
    device = am.base.get_input_embeddings().weight.device
    suffixes = [ids[prefix_len : len(ids) - 1] for ids, _ in encoded]
    width = max(len(s) for s in suffixes)
    targets = torch.zeros((len(encoded), width), dtype=torch.long)
    valid = torch.zeros_like(targets, dtype=torch.bool)
    for row, ((ids, start), suffix) in enumerate(zip(encoded, suffixes, strict=True)):
        targets[row, : len(suffix)] = torch.tensor(ids[start:])
        valid[row, : len(suffix)] = True
    logits, early = forward_after_prefix(am, cache, prefix_len, suffixes, _needs_early(modes),
                                         valid.to(device))
    return _mode_scores(logits, early, valid.to(device), targets.to(device), modes, decoding)


def _pad_id(am: Any) -> int:
    pad_id = getattr(am.tokenizer, "pad_token_id", None)  # no tokenizer: token ids given
    return 0 if pad_id is None else pad_id


def _needs_early(modes: Sequence[str]) -> bool:
    return any(methods.get(m).tap == "layers" for m in modes if m != methods.GREEDY)


def _capture(tap: Any, modes: Sequence[str]):
    return tap.capture(last_only=False) if _needs_early(modes) else contextlib.nullcontext()


def _early(tap: Any, modes: Sequence[str], positions: torch.Tensor | None) -> torch.Tensor | None:
    return tap.early_logits(positions=positions) if _needs_early(modes) else None


def _mode_scores(final: torch.Tensor, early: torch.Tensor | None, valid: torch.Tensor,
                 targets: torch.Tensor, modes: Sequence[str],
                 decoding: DecodingConfig) -> dict[str, list[float]]:
    """Summed scores per row: final (B,P,V), early (M,N,V) at the M valid entries or None,
    valid/targets (B,P)."""
    targets = targets[valid]
    lengths = valid.sum(-1).tolist()
    result = {}
    for mode in modes:
        per_token = _values(mode, final[valid], early, targets, decoding)
        per_token = per_token.double().cpu().split(lengths)
        result[mode] = [float(t.sum()) for t in per_token]
    return result


def _values(mode: str, final: torch.Tensor, early: torch.Tensor | None, targets: torch.Tensor,
            decoding: DecodingConfig) -> torch.Tensor:
    if mode == methods.GREEDY:
        return greedy_values(final, targets)
    method = methods.get(mode)
    return method.score(final, early, targets, decoding.method(method.name))


def batches(encoded: Sequence[tuple[list[int], int]], batch_size: int,
            shared_prefix: bool) -> list[tuple[tuple[int, ...] | None, list[int]]]:
    """(shared prefix or None, indices of pairs scored in one forward pass), in scoring order.

    Without a shared prefix, pairs are sorted by length and cut into batches. With it, pairs
    are grouped by their tokens before the last prompt token (a TruthfulQA question's answers,
    a FACTOR prefix's completions), each group sorted by length and cut into batches.
    """
    if not shared_prefix:
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        return [(None, order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ids, start) in enumerate(encoded):
        groups.setdefault(tuple(ids[: start - 1]), []).append(i)
    out = []
    for prefix, members in groups.items():
        members.sort(key=lambda i: len(encoded[i][0]))
        out += [(prefix, members[i : i + batch_size]) for i in range(0, len(members), batch_size)]
    return out


def score_encoded(
    am: Any, encoded: Sequence[tuple[list[int], int]], modes: Sequence[str],
    decoding: DecodingConfig, batch_size: int = 8, padding_side: str = "right",
    shared_prefix: bool = True, progress: bool = False,
) -> dict[str, list[float]]:
    """`score_pairs` on encoded pairs (`encode_pair`): mode -> one score per pair, in order."""
    scores: dict[str, list[float]] = {m: [0.0] * len(encoded) for m in modes}
    cached: tuple[tuple[int, ...] | None, Any] = (None, None)
    for prefix, chunk in tqdm(batches(encoded, batch_size, shared_prefix), desc="scoring",
                              disable=not progress):
        rows = [encoded[i] for i in chunk]
        if prefix is None:
            got = score_batch(am, rows, modes, decoding, padding_side)
        else:
            if cached[0] != prefix:
                cached = (prefix, prefix_cache(am, prefix))
            got = _score_after_prefix(am, cached[1], len(prefix), rows, modes, decoding)
        for mode in modes:
            for i, value in zip(chunk, got[mode], strict=True):
                scores[mode][i] = value
    return scores


def score_pairs(
    am: Any, pairs: Sequence[tuple[str, str]], modes: Sequence[str], decoding: DecodingConfig,
    batch_size: int = 8, padding_side: str = "right", progress: bool = False,
    shared_prefix: bool = True,
) -> dict[str, list[float]]:
    """Score every (prompt, continuation) pair in every mode.

    Args:
        am: an AugmentedModel with a tokenizer.
        pairs: (prompt, continuation) texts.
        modes: "greedy" and/or mode names of methods with a `score` function.
        decoding: the methods' options (a task preset already applied; `enabled` is ignored).
        batch_size: pairs per forward pass.
        padding_side: "right" or "left" without `shared_prefix` (scores do not depend on it;
            after a shared prefix the answers are always right padded).
        progress: show a progress bar.
        shared_prefix: run each distinct prompt once into a KV cache and only the answers
            after it (the same scores, several times faster when prompts repeat); False runs
            every whole sequence.

    Returns:
        mode -> one summed score per pair, in input order.
    """
    encoded = [encode_pair(am.tokenizer, p, c) for p, c in pairs]
    return score_encoded(am, encoded, modes, decoding, batch_size, padding_side, shared_prefix,
                         progress)
