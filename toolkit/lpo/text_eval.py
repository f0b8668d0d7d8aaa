"""Held-out evaluation of a trained head on a text task with prompt kinds (e.g. arith_writing).

For every held-out prompt, `samples` replies are drawn (same seeds for every setting) at each
fixed temperature of the head's grid (temperature 0 = greedy, drawn once) and with the head's
own adaptive temperature (its argmax; per reply or per token, as the head's level says); the
task's batch reward scores them. Reported: the head's choices per kind (sequence level: the
temperature it picks per prompt; token level: the mean temperature of the reply tokens), and
mean rewards per kind and overall, for the head and each fixed temperature.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from toolkit.graft.prompting import encode
from toolkit.methods.options import AdaptiveOptions, DecodingConfig, pinned


def _generate(model, records: list[dict], samples: int, decoding: DecodingConfig,
              batch_size: int) -> tuple[list[str], list[float]]:
    """(reply texts, mean temperature of each reply or nan), `samples` rows per record."""
    rows = [r["prompt"] for r in records for _ in range(samples)]
    texts, temps = [], []
    for start in range(0, len(rows), batch_size):
        enc = encode(model.tokenizer, rows[start : start + batch_size])
        ids, mask = enc["input_ids"], enc["attention_mask"]
        out = model.generate(ids, mask, decoding=decoding, return_records=True)
        new = out.sequences[:, ids.shape[1] :].cpu()
        keep = out.reply_mask.cpu()
        for i in range(new.shape[0]):
            texts.append(model.tokenizer.decode(new[i][keep[i]], skip_special_tokens=True))
            if out.temperature is None or not keep[i].any():
                temps.append(float("nan"))
            else:
                temps.append(float(out.temperature[i].cpu()[keep[i]].float().mean()))
    return texts, temps


def _rewards(reward, records: list[dict], texts: list[str], samples: int) -> list[float]:
    """Mean reward of each record's samples."""
    flat_records = [r for r in records for _ in range(samples)]
    scores = reward([r["prompt"] for r in flat_records], texts, flat_records)
    return [sum(scores[i * samples : (i + 1) * samples]) / samples for i in range(len(records))]


def mean_by_kind(values: list[float], records: list[dict], kinds) -> dict[str, float]:
    """Mean of `values` over the records of each kind (record['kind']), and over all."""
    out = {}
    for kind in kinds:
        mine = [v for v, r in zip(values, records, strict=True) if r["kind"] == kind]
        out[kind] = sum(mine) / max(len(mine), 1)
    out["all"] = sum(values) / max(len(values), 1)
    return out


@torch.no_grad()
def head_choices(model, records: list[dict]) -> list[float]:
    """The grid temperature the head's argmax picks at the last prompt token of each record."""
    enc = encode(model.tokenizer, [r["prompt"] for r in records])
    hidden = model.head_features(enc["input_ids"], enc["attention_mask"])[:, -1]
    grid = [float(t) for t in model.head.temperatures.tolist()]
    return [grid[i] for i in model.head.choose(hidden).tolist()]


@torch.no_grad()
def evaluate_text_head(model, records: list[dict], reward, *, samples: int = 3,
                       max_new_tokens: int = 16, seed: int = 0, batch_size: int = 48,
                       fixed: dict | None = None) -> dict:
    """Choices and rewards of the head vs every fixed grid temperature (see module doc).

    `fixed`: the fixed-temperature rows of an earlier report on the same prompts, samples and
    seed (e.g. another head's); they are reused instead of generated again.
    """
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    level = model.graft_config.head.level
    grid = [float(t) for t in model.head.temperatures.tolist()]
    base = pinned(DecodingConfig(max_new_tokens=max_new_tokens, seed=seed))
    head_decoding = pinned(DecodingConfig(
        do_sample=True, adaptive_temperature=AdaptiveOptions(enabled=True),
        max_new_tokens=max_new_tokens, seed=seed,
    ))
    texts, temps = _generate(model, records, samples, head_decoding, batch_size)
    per_record = {"head": _rewards(reward, records, texts, samples)}
    for tau in [] if fixed else grid:
        if tau == 0:
            greedy, _ = _generate(model, records, 1, base, batch_size)
            texts = [t for t in greedy for _ in range(samples)]
        else:
            decoding = pinned(DecodingConfig(do_sample=True, temperature=tau,
                                             max_new_tokens=max_new_tokens, seed=seed))
            texts, _ = _generate(model, records, samples, decoding, batch_size)
        per_record[f"{tau:g}"] = _rewards(reward, records, texts, samples)
    rewards = {k: mean_by_kind(v, records, kinds) for k, v in per_record.items()}
    rewards.update({k: v for k, v in (fixed or {}).items() if k != "head"})
    report: dict[str, Any] = {"level": level, "samples": samples, "prompts": len(records),
                              "rewards": rewards}
    if level == "sequence":
        chosen = head_choices(model, records)
        report["choices"] = {
            k: {f"{t:g}": n for t, n in sorted(Counter(
                c for c, r in zip(chosen, records, strict=True) if r["kind"] == k).items())}
            for k in kinds
        }
    mean_temp = [sum(temps[i * samples : (i + 1) * samples]) / samples for i in range(len(records))]
    report["mean_temperature"] = mean_by_kind(mean_temp, records, kinds)
    return report
