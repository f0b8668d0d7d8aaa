"""Teacher-forced answer scoring for greedy and every method with a scoring function
(docs/methods.md sections 2-3).

A (prompt, continuation) pair is scored as the sum, over the continuation's tokens, of a value
at the token: greedy = log-softmax log-prob of the final layer; a method's mode = its
registered `score` function (`toolkit.methods`) with its options from the `DecodingConfig`:
DoLa = the contrast log_softmax(z_L) - log_softmax(z_j) with the premature layer j chosen per
position by JSD, tokens outside the relative-top set valued `relative_top_value`; SLED = every
position evolved independently, then the raw evolved value or its log_softmax.

Several pairs share one forward pass (right or left padded, position ids from the mask, so
padding never changes a score); all modes are computed from that same pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from toolkit import methods
from toolkit.errors import DataError
from toolkit.options import DecodingConfig


def encode_pair(tokenizer: Any, prompt: str, continuation: str) -> tuple[list[int], int]:
    """Token ids of prompt + continuation and the index of the first continuation token.

    Like the reference, the whole text is tokenized and the prompt's own tokenization is its
    prefix; when the two disagree at the boundary (a merge across it), the continuation is
    tokenized on its own and appended, so the scored tokens are exactly the continuation's.
    """
    prefix = tokenizer(prompt)["input_ids"]
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
    """Scores of a few encoded pairs in one forward pass, for every mode."""
    base, tap = am.base, am.tap
    device = base.get_input_embeddings().weight.device
    pad_id = getattr(am.tokenizer, "pad_token_id", None)  # no tokenizer: token ids given
    pad_id = 0 if pad_id is None else pad_id
    b = _pad(encoded, pad_id, padding_side, device)
    width = b["input_ids"].shape[1]
    keep = width - int(b["positions"].min())
    needs_early = any(methods.get(m).tap == "layers" for m in modes if m != methods.GREEDY)
    with tap.capture(last_only=False) if needs_early else contextlib.nullcontext():
        out = base(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                   position_ids=b["position_ids"], logits_to_keep=keep, use_cache=False)
        rows = torch.arange(len(encoded), device=device)[:, None]
        final = out.logits[rows, b["positions"] - (width - keep)]
        early = tap.early_logits(positions=b["positions"]) if needs_early else None
    valid, targets = b["valid"], b["targets"][b["valid"]]
    lengths = valid.sum(-1).tolist()
    result = {}
    for mode in modes:
        per_token = _values(mode, final[valid], early, valid, targets, decoding)
        per_token = per_token.double().cpu().split(lengths)
        result[mode] = [float(t.sum()) for t in per_token]
    return result


def _values(mode: str, final: torch.Tensor, early: torch.Tensor | None, valid: torch.Tensor,
            targets: torch.Tensor, decoding: DecodingConfig) -> torch.Tensor:
    if mode == methods.GREEDY:
        return greedy_values(final, targets)
    method = methods.get(mode)
    early_rows = None if early is None else early[valid]
    return method.score(final, early_rows, targets, getattr(decoding, method.name))


def score_pairs(
    am: Any, pairs: Sequence[tuple[str, str]], modes: Sequence[str], decoding: DecodingConfig,
    batch_size: int = 8, padding_side: str = "right", progress: bool = False,
) -> dict[str, list[float]]:
    """Score every (prompt, continuation) pair in every mode; batches group similar lengths.

    Args:
        am: an AugmentedModel with a tokenizer.
        pairs: (prompt, continuation) texts.
        modes: "greedy" and/or mode names of methods with a `score` function.
        decoding: the methods' options (a task preset already applied; `enabled` is ignored).
        batch_size: pairs per forward pass.
        padding_side: "right" or "left" (scores do not depend on it).
        progress: show a progress bar.

    Returns:
        mode -> one summed score per pair, in input order.
    """
    encoded = [encode_pair(am.tokenizer, p, c) for p, c in pairs]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    scores: dict[str, list[float]] = {m: [0.0] * len(encoded) for m in modes}
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for chunk in tqdm(chunks, desc="scoring", disable=not progress):
        got = score_batch(am, [encoded[i] for i in chunk], modes, decoding, padding_side)
        for mode in modes:
            for i, value in zip(chunk, got[mode], strict=True):
                scores[mode][i] = value
    return scores
