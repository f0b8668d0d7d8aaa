"""The LPO steps of the CLI: collect, train, and the whole `run`, each a step of the library's
one pipeline (`toolkit.lpo.pipeline`) plus what it prints.

Prompts come from `data.prompts` (JSONL) or, when it is unset, a built-in task (`data.task`):
the synthetic task of the tiny models (`toolkit.lpo.synthetic`) or arithmetic + writing prompts
for a real chat model (`toolkit.lpo.arith_writing`); each has its own reward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

from toolkit.lpo import pipeline, synthetic
from toolkit.options import DecodingConfig, describe, pinned
from toolkit.recipes.models import load_model
from toolkit.recipes.schema import Recipe

say = rank_zero_only(print)


def collect(model: Any, recipe: Recipe) -> Any:
    """Collect the pairs into data.pairs (resumable) and report the counts."""
    stats = pipeline.collect(model, recipe.data, recipe.collect)
    say(
        f"collected {stats.pairs} pairs from {stats.prompts - stats.skipped} prompts "
        f"({stats.dropped} dropped: all rewards equal; {stats.skipped} done earlier) "
        f"in {stats.seconds:.1f}s -> {recipe.data.pairs}"
    )
    return stats


def train(model: Any, recipe: Recipe) -> Any:
    """Train the head on data.pairs and export the checkpoint (with the recipe's decoding
    options as its default) to output_dir."""
    model.decoding = recipe.decoding
    result = pipeline.train(model, recipe.data, recipe.train, recipe.trainer, recipe.output_dir,
                            progress=recipe.trainer.progress_bar,
                            log_dir=Path(recipe.work_dir) / "training")
    say(result.summary(f"{recipe.train.loss}, {recipe.train.loss_type}"))
    say(f"checkpoint: {result.out_dir}")
    return result


def run_pipeline(recipe: Recipe) -> None:
    """graft -> collect -> train -> save -> reload -> generate, reporting each step."""
    from toolkit.graft.augmented import AugmentedModel

    model = load_model(recipe.model, recipe.graft, say=say)
    head = model.graft_config.head
    say(
        f"[1/5] grafted {model.parts.model_type} ({model.parts.num_layers} layers): "
        f"tap on {len(model.tap.candidate_layers)} layers, {head.level}-level head over "
        f"temperatures {list(head.temperatures)}"
    )
    say("[2/5] collecting preference pairs")
    collect(model, recipe)
    say("[3/5] training the head")
    result = train(model, recipe)
    if not result.is_global_zero:
        return
    reloaded = AugmentedModel.from_pretrained(recipe.output_dir)
    say(f"[4/5] reloaded the checkpoint from {result.out_dir}")
    if recipe.data.prompts is not None:
        _text_samples(reloaded, recipe)
    elif recipe.data.task == "arith_writing":
        _arith_writing_report(reloaded, recipe)
    else:
        _synthetic_report(reloaded, recipe)


def _arith_writing_report(model: Any, recipe: Recipe) -> None:
    from toolkit.cli import task_report

    say("[5/5] evaluating on held-out prompts")
    report = task_report.evaluate(model, recipe)
    task_report.print_report(report, "learned temperature per prompt kind, sequence-level head")
    figures = {"sequence": report}
    if recipe.data.arith_writing.token_head:
        figures["token"] = _token_head(model, recipe, report["rewards"])
    figures["side_by_side"] = task_report.side_by_side(model, recipe)
    say(f"figures: {task_report.write_json(recipe, figures)}")


def _token_head(model: Any, recipe: Recipe, fixed: dict) -> dict:
    """Graft a token-level head on the same base, train it on the same pairs, evaluate it."""
    import dataclasses

    from toolkit.cli import task_report
    from toolkit.graft.augmented import AugmentedModel

    config = model.graft_config
    token_config = dataclasses.replace(config, head=dataclasses.replace(config.head, level="token"))
    token = AugmentedModel.graft(model.base, token_config, tokenizer=model.tokenizer)
    token.decoding = recipe.decoding
    say("training a token-level head on the same pairs")
    result = pipeline.train(token, recipe.data, recipe.train, recipe.trainer,
                            f"{recipe.output_dir}-token", progress=recipe.trainer.progress_bar,
                            log_dir=Path(recipe.work_dir) / "training-token")
    say(result.summary(f"token level, {recipe.train.loss}, {recipe.train.loss_type}"))
    say(f"checkpoint: {result.out_dir}")
    report = task_report.evaluate(token, recipe, fixed=fixed)
    task_report.print_report(report, "token-level head")
    return report


def _synthetic_report(model: Any, recipe: Recipe) -> None:
    # The task's greedy references and fixed-temperature baselines are defined on plain
    # decoding, so evaluate with the default options rather than the checkpoint's saved ones.
    model.decoding = pinned(DecodingConfig())
    records, _ = pipeline.task_prompts(model, recipe.data, recipe.collect.max_new_tokens,
                                       split="eval")
    report = synthetic.evaluate_head(model, records, seed=recipe.data.synthetic.seed)
    say("[5/5] learned temperature per prompt kind (held-out prompts, argmax of the head):")
    for kind, counts in report["choices"].items():
        shares = ", ".join(f"tau={t}: {n}" for t, n in counts.items())
        say(f"  {kind:8s} {shares}")
    rewards = report["rewards"]
    fixed = ", ".join(f"tau={k} {v['all']:.3f}" for k, v in rewards.items() if k != "head")
    say(f"  mean reward: head {rewards['head']['all']:.3f}; fixed temperatures: {fixed}")
    _synthetic_samples(model, records, recipe)


def _synthetic_samples(model: Any, records: list, recipe: Recipe) -> None:
    import torch

    picks = [next(r for r in records if r["kind"] == kind) for kind in synthetic.KINDS]
    ids = torch.tensor([r["prompt_ids"] for r in picks])
    out = model.generate(ids, decoding=recipe.decoding, return_records=True)
    say(f"samples ({describe(recipe.decoding)}):")
    new = out.sequences[:, ids.shape[1] :].tolist()
    for i, record in enumerate(picks):
        same = synthetic.match_fraction(new[i], record["greedy_ids"])
        tau = _first_temperature(out, i)
        text = model.tokenizer.decode(new[i], skip_special_tokens=True)
        say(f"  [{record['kind']}] tau={tau} matches greedy {same:.0%}: {text!r}")


def _text_samples(model: Any, recipe: Recipe) -> None:
    from toolkit.graft.batching import generate_replies

    prompts = recipe.generate.prompts or [
        r["prompt"]
        for r in pipeline.task_prompts(model, recipe.data, recipe.collect.max_new_tokens)[0][:2]
    ]
    say(f"[5/5] samples ({describe(recipe.decoding)}):")
    texts = model.render_prompts(prompts, recipe.generate.chat_template)
    replies = generate_replies(model, texts, recipe.decoding, recipe.generate.batch_size)
    for prompt, reply in zip(prompts, replies, strict=True):
        say(f"  {prompt!r} -> {reply.shown()!r}")


def _first_temperature(out: Any, row: int) -> str:
    if out.temperature is None:
        return "fixed"
    return f"{float(out.temperature[row, 0]):g}"
