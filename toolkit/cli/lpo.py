"""The LPO subcommands: `collect`, `train` and the whole `run`, each a step of the library's one
pipeline (`toolkit.lpo.pipeline`) plus what it prints.

Prompts come from `data.prompts` (JSONL) or, when it is unset, a built-in task (`data.task`):
the synthetic task of the tiny models (`toolkit.lpo.synthetic`) or arithmetic + writing prompts
for a real chat model (`toolkit.lpo.arith_writing`); each has its own reward.

Like `toolkit.cli.commands`, this module imports torch and Lightning only when a command runs,
so `surgery --help` and a recipe error stay quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.methods.options import DecodingConfig, describe, pinned

if TYPE_CHECKING:
    from toolkit.graft.augmented import AugmentedModel
    from toolkit.lpo.collect import CollectStats
    from toolkit.lpo.train import TrainResult
    from toolkit.recipes.schema import Recipe


def say(*values: object) -> None:
    """print, on the process of global rank 0 only (Lightning's `rank_zero_only`): the other
    processes of a DDP run stay quiet."""
    from lightning.pytorch.utilities import rank_zero_only

    rank_zero_only(print)(*values)


def _model(recipe: Recipe, model: AugmentedModel | None) -> AugmentedModel:
    """`model` (the one `run` has loaded), else the recipe's (its progress lines on stderr)."""
    if model is not None:
        return model
    from toolkit.recipes.models import load_model

    return load_model(recipe.model, recipe.graft)


def cmd_collect(recipe: Recipe, model: AugmentedModel | None = None) -> CollectStats:
    """Collect the pairs into data.pairs (resumable) and report the counts; `model`: the one
    `run` has loaded already (else the recipe's is loaded)."""
    from toolkit.lpo.pipeline import collect

    stats = collect(_model(recipe, model), recipe.data, recipe.collect)
    say(
        f"collected {stats.pairs} pairs from {stats.prompts - stats.skipped} prompts "
        f"({stats.dropped} dropped: all rewards equal; {stats.skipped} done earlier) "
        f"in {stats.seconds:.1f}s -> {recipe.data.pairs}"
    )
    return stats


def cmd_train(recipe: Recipe, model: AugmentedModel | None = None) -> TrainResult:
    """Train the head on data.pairs and export the checkpoint (with the recipe's decoding
    options as its default) to output_dir; `model` as in `cmd_collect`."""
    model = _model(recipe, model)
    model.decoding = recipe.decoding
    result = _train(model, recipe, recipe.output_dir, "training")
    say(result.summary(f"{recipe.train.loss}, {recipe.train.loss_type}"))
    say(f"checkpoint: {result.out_dir}")
    return result


def _train(model: AugmentedModel, recipe: Recipe, out_dir: str, logs: str) -> TrainResult:
    """`train_head` on data.pairs with the recipe's sections; logs under work_dir/`logs`."""
    from toolkit.lpo.train import train_head

    return train_head(model, recipe.data.pairs, recipe.train, recipe.trainer, out_dir,
                      progress=recipe.trainer.shows_progress,
                      log_dir=Path(recipe.work_dir) / logs)


def cmd_run(recipe: Recipe) -> None:
    """graft -> collect -> train -> save -> reload -> generate, reporting each step."""
    from toolkit.graft.augmented import AugmentedModel
    from toolkit.recipes.models import load_model

    model = load_model(recipe.model, recipe.graft, say=say)
    head = model.graft_config.head
    say(
        f"[1/5] grafted {model.parts.model_type} ({model.parts.num_layers} layers): "
        f"tap on {len(model.tap.candidate_layers)} layers, {head.level}-level head over "
        f"temperatures {list(head.temperatures)}"
    )
    say("[2/5] collecting preference pairs")
    cmd_collect(recipe, model)
    say("[3/5] training the head")
    result = cmd_train(recipe, model)
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
    result = _train(token, recipe, f"{recipe.output_dir}-token", "training-token")
    say(result.summary(f"token level, {recipe.train.loss}, {recipe.train.loss_type}"))
    say(f"checkpoint: {result.out_dir}")
    report = task_report.evaluate(token, recipe, fixed=fixed)
    task_report.print_report(report, "token-level head")
    return report


def _synthetic_report(model: Any, recipe: Recipe) -> None:
    from toolkit.lpo import synthetic
    from toolkit.lpo.pipeline import task_prompts

    # The task's greedy references and fixed-temperature baselines are defined on plain
    # decoding, so evaluate with the default options rather than the checkpoint's saved ones.
    model.decoding = pinned(DecodingConfig())
    records, _ = task_prompts(model, recipe.data, recipe.collect.max_new_tokens, split="eval")
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

    from toolkit.lpo import synthetic

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
    from toolkit.lpo.pipeline import task_prompts

    prompts = recipe.generate.prompts or [
        r["prompt"]
        for r in task_prompts(model, recipe.data, recipe.collect.max_new_tokens)[0][:2]
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
