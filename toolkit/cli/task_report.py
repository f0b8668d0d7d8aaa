"""The `run` report for the built-in arith_writing task on a real chat model.

Prints the learned temperature per prompt kind on held-out prompts, the reward table (the head
vs every fixed temperature of its grid and vs EDT, whose t0 and theta are tuned on the training
prompts), optionally the same for a token-level head trained on
the same pairs, and side-by-side replies (greedy / SLED / SLED + top-n-sigma + adaptive
temperature) for a few prompts. Everything printed is also written to `work_dir/report.json`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

from toolkit.io import reports
from toolkit.lpo import pipeline
from toolkit.lpo.text_eval import EDT_T0S, EDT_THETAS, evaluate_text_head, tune_text_edt
from toolkit.methods.options import (
    AdaptiveOptions,
    DecodingConfig,
    describe,
    pinned,
    with_overrides,
)
from toolkit.recipes.schema import Recipe

say = rank_zero_only(print)


def held_out(model: Any, recipe: Recipe) -> tuple[list[dict], Any]:
    """(held-out prompt records, the task's reward)."""
    return pipeline.task_prompts(model, recipe.data, recipe.collect.max_new_tokens, split="eval")


def evaluate(model: Any, recipe: Recipe, fixed: dict | None = None) -> dict:
    """The held-out report; without `fixed` rows to reuse, EDT is first tuned on the training
    prompts (`tune_text_edt`) and reported beside the fixed temperatures."""
    cfg = recipe.data.arith_writing
    records, reward = held_out(model, recipe)
    settings = dict(samples=cfg.eval_samples, max_new_tokens=recipe.collect.max_new_tokens,
                    seed=recipe.decoding.seed or 0, batch_size=cfg.eval_batch_size, note=say)
    edt = None
    what = ("the head (the other rows are reused)" if fixed else
            f"{len(model.graft_config.head.temperatures) + 2} settings, after tuning EDT's t0 "
            f"and theta on the training prompts ({len(EDT_T0S) * len(EDT_THETAS)} settings)")
    say(f"evaluating on {len(records)} held-out prompts x {cfg.eval_samples} samples: {what}")
    if fixed is None:
        train, _ = pipeline.task_prompts(model, recipe.data, recipe.collect.max_new_tokens)
        edt = tune_text_edt(model, train, reward, **settings)
    return evaluate_text_head(model, records, reward, fixed=fixed, edt=edt, **settings)


def print_report(report: dict, title: str) -> None:
    kinds = [k for k in report["mean_temperature"] if k != "all"]
    say(f"{title} (held-out: {report['prompts']} prompts x {report['samples']} samples):")
    if "choices" in report:
        for kind, counts in report["choices"].items():
            shares = ", ".join(f"tau={t}: {n}" for t, n in counts.items())
            say(f"  {kind:10s} picks {shares}")
    else:
        for kind in kinds:
            say(f"  {kind:10s} mean temperature of reply tokens "
                f"{report['mean_temperature'][kind]:.2f}")
    rewards = report["rewards"]
    header = "  mean reward      " + "".join(f"{k:>11s}" for k in [*kinds, "all"])
    say(header)
    for name, row in rewards.items():
        label = {"head": "head", "edt": "EDT"}.get(name, f"tau={name}")
        say(f"  {label:16s} " + "".join(f"{row[k]:11.3f}" for k in [*kinds, "all"]))
    head = rewards["head"]["all"]
    best = max((k for k in rewards if k not in ("head", "edt")), key=lambda k: rewards[k]["all"])
    verdict = "beats" if head > rewards[best]["all"] else "does NOT beat"
    say(f"  the head {verdict} every fixed temperature (best fixed: tau={best}, "
        f"{rewards[best]['all']:.3f})")
    if "edt" in rewards:
        tuned = report.get("edt")
        how = (f" (t0={tuned['t0']:g}, theta={tuned['theta']:g}, tuned on {tuned['tuned_on']})"
               if tuned else "")
        verdict = "beats" if head > rewards["edt"]["all"] else "does NOT beat"
        say(f"  the head {verdict} EDT{how}, {rewards['edt']['all']:.3f}")


def side_by_side(model: Any, recipe: Recipe, count: int = 3) -> list:
    """Replies of a few held-out prompts (the first of each kind, then a second writing one)
    with greedy, SLED, and the recipe's SLED + top-n-sigma + adaptive sampling."""
    from toolkit.graft.batching import generate_replies

    records, _ = held_out(model, recipe)
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    picks = [next(r for r in records if r["kind"] == k) for k in kinds]
    picks += [r for r in records if r not in picks][-1:]
    picks = picks[:count]
    prompts = [r["prompt"] for r in picks]
    sled = dataclasses.replace(recipe.decoding.sled, enabled=True)
    modes = {
        "greedy": pinned(DecodingConfig(max_new_tokens=recipe.decoding.max_new_tokens)),
        "SLED": pinned(DecodingConfig(sled=sled, max_new_tokens=recipe.decoding.max_new_tokens)),
        describe(recipe.decoding): with_overrides(
            recipe.decoding, adaptive_temperature=AdaptiveOptions(enabled=True)),
    }
    replies = {name: generate_replies(model, prompts, d, len(prompts))
               for name, d in modes.items()}
    say("side by side (held-out prompts):")
    rows = []
    for i, record in enumerate(picks):
        say(f"  [{record['kind']}] {record['question']}")
        row = {"question": record["question"]}
        for name in modes:
            reply = replies[name][i]
            say(f"    {name}: {reply.text!r}" if reply.text else f"    {name}: {reply.shown()}")
            row[name] = reply.text
        rows.append(row)
    return rows


REPORT = "report.json"


def write_json(recipe: Recipe, figures: dict) -> Path:
    """The figures as work_dir/report.json, a report this toolkit owns (`toolkit.io.reports`)."""
    return reports.write_text(recipe.work_dir, REPORT, "work_dir", json.dumps(figures, indent=1))
