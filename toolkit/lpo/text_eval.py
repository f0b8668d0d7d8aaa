"""Held-out evaluation of a trained head on a text task with prompt kinds (e.g. arith_writing).

For every held-out prompt, `samples` replies are drawn (same seeds for every setting) at each
fixed temperature of the head's grid (temperature 0 = greedy, drawn once) and with the head's
own adaptive temperature (its argmax; per reply or per token, as the head's level says); the
task's batch reward scores them. Reported: the head's choices per kind (sequence level: the
temperature it picks per prompt; token level: the mean temperature of the reply tokens), and
mean rewards per kind and overall, for the head and each fixed temperature.

EDT (entropy-based dynamic temperature, docs/methods.md section 5b) is the untrained baseline
the head must beat: `tune_edt` picks its t0 and theta on the *training* prompts over the small
grid `EDT_T0S` x `EDT_THETAS` (highest mean reward, the first on ties), and
`evaluate_text_head(..., edt=...)` reports it on the held-out prompts beside the fixed
temperatures. Nothing is tuned on the held-out prompts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from toolkit.graft.prompting import encode
from toolkit.methods.options import AdaptiveOptions, DecodingConfig, EdtOptions, pinned

EDT_T0S = (0.5, 1.0)
EDT_THETAS = (0.5, 2.0, 8.0)


Note = Callable[[str], None]


def _generate(model, records: list[dict], samples: int, decoding: DecodingConfig,
              batch_size: int, hf: dict | None = None, note: Note | None = None,
              label: str = "") -> tuple[list[str], list[float]]:
    """(reply texts, mean temperature of each reply or nan), `samples` rows per record; `hf`:
    transformers generate() keywords; `note` gets one line when done (`label`, the replies and
    the seconds they took)."""
    rows = [r["prompt"] for r in records for _ in range(samples)]
    start_time = time.perf_counter()
    texts, temps = [], []
    for start in range(0, len(rows), batch_size):
        enc = encode(model.tokenizer, rows[start : start + batch_size])
        ids, mask = enc["input_ids"], enc["attention_mask"]
        out = model.generate(ids, mask, decoding=decoding, return_records=True, **(hf or {}))
        new = out.sequences[:, ids.shape[1] :].cpu()
        keep = out.reply_mask.cpu()
        for i in range(new.shape[0]):
            texts.append(model.tokenizer.decode(new[i][keep[i]], skip_special_tokens=True))
            if out.temperature is None or not keep[i].any():
                temps.append(float("nan"))
            else:
                temps.append(float(out.temperature[i].cpu()[keep[i]].float().mean()))
    if note is not None:
        note(f"  {label}: {len(rows)} replies in {time.perf_counter() - start_time:.1f}s")
    return texts, temps


def _rewards(reward, records: list[dict], texts: list[str], samples: int) -> list[float]:
    """Mean reward of each record's samples."""
    flat_records = [r for r in records for _ in range(samples)]
    scores = reward([r["prompt"] for r in flat_records], texts, flat_records)
    return [sum(scores[i * samples : (i + 1) * samples]) / samples for i in range(len(records))]


@torch.no_grad()
def mean_reward(model, records: list[dict], reward, decoding: DecodingConfig, *,
                samples: int = 3, batch_size: int = 48, hf: dict | None = None
                ) -> dict[str, float]:
    """Mean reward of `samples` replies per record under `decoding` (and the transformers
    generate() keywords `hf`), per kind and over all."""
    texts, _ = _generate(model, records, samples, decoding, batch_size, hf)
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    return mean_by_kind(_rewards(reward, records, texts, samples), records, kinds)


def mean_by_kind(values: list[float], records: list[dict], kinds) -> dict[str, float]:
    """Mean of `values` over the records of each kind (record['kind']), and over all."""
    out = {}
    for kind in kinds:
        mine = [v for v, r in zip(values, records, strict=True) if r["kind"] == kind]
        out[kind] = sum(mine) / max(len(mine), 1)
    out["all"] = sum(values) / max(len(values), 1)
    return out


def edt_decoding(edt: dict, max_new_tokens: int, seed: int) -> DecodingConfig:
    """Sampling with EDT at `edt`'s t0 and theta, every other setting off."""
    options = EdtOptions(enabled=True, t0=edt["t0"], theta=edt["theta"])
    return pinned(DecodingConfig(do_sample=True, edt=options, max_new_tokens=max_new_tokens,
                                 seed=seed))


def tune_edt(score: Callable[[dict], float], what: str) -> dict:
    """EDT's t0 and theta over the grid `EDT_T0S` x `EDT_THETAS`: the pair with the highest
    `score({"t0", "theta"})` (the first on ties), every score in `grid`, and `tuned_on`
    (`what` the scores were measured on, e.g. "32 training prompts x 3 samples")."""
    grid = [{"t0": t0, "theta": theta} for t0 in EDT_T0S for theta in EDT_THETAS]
    scores = [score(cell) for cell in grid]
    best = max(range(len(grid)), key=lambda i: scores[i])
    return {**grid[best], "tuned_on": what,
            "grid": {f"t0={c['t0']:g} theta={c['theta']:g}": v
                     for c, v in zip(grid, scores, strict=True)}}


@torch.no_grad()
def tune_text_edt(model, records: list[dict], reward, *, samples: int = 3,
                  max_new_tokens: int = 16, seed: int = 0, batch_size: int = 48,
                  note: Note | None = None) -> dict:
    """`tune_edt` on `records` (the task's training prompts): mean reward of `samples` replies
    per prompt at each grid point (`note`: one line per point as it finishes)."""
    def score(edt: dict) -> float:
        label = f"EDT t0={edt['t0']:g} theta={edt['theta']:g} (tuning, training prompts)"
        texts, _ = _generate(model, records, samples, edt_decoding(edt, max_new_tokens, seed),
                             batch_size, note=note, label=label)
        values = _rewards(reward, records, texts, samples)
        return sum(values) / len(values)

    return tune_edt(score, f"{len(records)} training prompts x {samples} samples")


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
                       fixed: dict | None = None, edt: dict | None = None,
                       note: Note | None = None) -> dict:
    """Choices and rewards of the head vs every fixed grid temperature (see module doc);
    `note` gets one line per setting as it finishes.

    `fixed`: the fixed-temperature (and EDT) rows of an earlier report on the same prompts,
    samples and seed (e.g. another head's); they are reused instead of generated again.
    `edt`: EDT's tuned settings (`tune_text_edt` on the training prompts): adds the row "edt".
    """
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    level = model.graft_config.head.level
    grid = [float(t) for t in model.head.temperatures.tolist()]
    base = pinned(DecodingConfig(max_new_tokens=max_new_tokens, seed=seed))
    head_decoding = pinned(DecodingConfig(
        do_sample=True, adaptive_temperature=AdaptiveOptions(enabled=True),
        max_new_tokens=max_new_tokens, seed=seed,
    ))
    texts, temps = _generate(model, records, samples, head_decoding, batch_size, note=note,
                             label="the head")
    per_record = {"head": _rewards(reward, records, texts, samples)}
    for tau in [] if fixed else grid:
        if tau == 0:
            greedy, _ = _generate(model, records, 1, base, batch_size, note=note,
                                  label="tau=0 (greedy)")
            texts = [t for t in greedy for _ in range(samples)]
        else:
            decoding = pinned(DecodingConfig(do_sample=True, temperature=tau,
                                             max_new_tokens=max_new_tokens, seed=seed))
            texts, _ = _generate(model, records, samples, decoding, batch_size, note=note,
                                 label=f"tau={tau:g}")
        per_record[f"{tau:g}"] = _rewards(reward, records, texts, samples)
    if edt is not None:
        texts, _ = _generate(model, records, samples, edt_decoding(edt, max_new_tokens, seed),
                             batch_size, note=note, label="EDT (tuned)")
        per_record["edt"] = _rewards(reward, records, texts, samples)
    rewards = {k: mean_by_kind(v, records, kinds) for k, v in per_record.items()}
    rewards.update({k: v for k, v in (fixed or {}).items() if k != "head"})
    report: dict[str, Any] = {"level": level, "samples": samples, "prompts": len(records),
                              "rewards": rewards}
    if edt is not None:
        report["edt"] = edt
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
