"""The subcommands graft, generate, eval and bench (`toolkit.cli.lpo` has collect, train and
run); the table in `toolkit.cli.main` names them. Each takes a validated `Recipe` and imports
torch and the rest of what it needs only when it runs, so `surgery --help` and a recipe error
stay quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toolkit.recipes.schema import Recipe


def cmd_graft(recipe: Recipe) -> None:
    from toolkit.recipes.models import load_model

    model = load_model(recipe.model, recipe.graft)
    model.decoding = recipe.decoding
    print(f"saved augmented checkpoint to {model.save_pretrained(recipe.output_dir)}")


def cmd_generate(recipe: Recipe) -> None:
    from toolkit.cli import predict
    from toolkit.cli.preflight import parallel
    from toolkit.graft.batching import generate_replies
    from toolkit.io.jsonl import read_prompts
    from toolkit.recipes.models import load_model

    gen = recipe.generate
    if gen.input:
        records = [r for _, r in read_prompts(gen.input, gen.prompt_field, token_ids=True,
                                              key="generate.input")]
    else:
        records = [{gen.prompt_field: p} for p in gen.prompts]
    model = load_model(recipe.model, recipe.graft)
    form = model.prompt_convention(gen.chat_template)
    texts = model_prompts(model, records, gen.prompt_field, gen.chat_template)
    if parallel(recipe):
        written = predict.predict_parallel(
            model, records, texts, recipe.decoding, gen.batch_size, recipe.trainer, gen.output,
            field=gen.prompt_field, prompt_format=form, logprobs=gen.logprobs)
        if written is not None:
            print(f"wrote {len(records)} completions to {written}")
        return
    if gen.output:
        path, earlier = predict.generate_to_file(
            model, records, texts, recipe.decoding, gen.batch_size, gen.output,
            field=gen.prompt_field, prompt_format=form, force=gen.force_resume,
            logprobs=gen.logprobs)
        resumed = f" ({earlier} more were there from an earlier run)" if earlier else ""
        print(f"wrote {len(records) - earlier} completions to {path}{resumed}")
    elif len(texts) == 1:
        _stream_one(model, records[0].get(gen.prompt_field), texts[0], recipe)
    else:
        replies = generate_replies(model, texts, recipe.decoding, gen.batch_size)
        for record, text, reply in zip(records, texts, replies, strict=True):
            shown = record.get(gen.prompt_field) if isinstance(text, str) else text
            print(f"--- {shown!r}\n{reply.shown()}")


def model_prompts(model, records: list[dict], field: str, chat_template: str) -> list:
    """What the model reads for each record: its `prompt_ids` when it has them (token ids
    given directly: no template, no BOS added), else its `field` rendered (chat template or
    raw text, `AugmentedModel.render_prompts`)."""
    texts = iter(model.render_prompts([r[field] for r in records if "prompt_ids" not in r],
                                      chat_template))
    return [r["prompt_ids"] if "prompt_ids" in r else next(texts) for r in records]


def _stream_one(model, prompt, text, recipe: Recipe) -> None:
    """Print the prompt, then the reply as it is generated (a chat reply on its own line); an
    empty reply is shown as a note. `text` is what the model reads (text or token ids)."""
    from transformers import TextStreamer

    from toolkit.graft.batching import EMPTY_NOTE, generate_replies

    streamer = TextStreamer(model.tokenizer, skip_prompt=True, skip_special_tokens=True)
    reads = text
    if not isinstance(text, str):  # token ids: shown as they decode
        prompt = text = model.tokenizer.decode(text, skip_special_tokens=True)
    chat = text != prompt
    print(prompt if isinstance(prompt, str) else text, end="\n" if chat else "", flush=True)
    reply = generate_replies(model, [reads], recipe.decoding, 1, streamer=streamer)[0]
    if reply.empty:
        print(EMPTY_NOTE)


def cmd_eval(recipe: Recipe) -> None:
    from toolkit.eval.run import run_eval
    from toolkit.recipes.models import load_model

    result = run_eval(load_model(recipe.model, recipe.graft), recipe.eval, recipe.decoding)
    if recipe.eval.temperatures:
        from toolkit.eval.sweep import markdown

        print(f"accuracy vs temperature, {result['questions']} questions x {result['samples']} "
              f"samples -> {recipe.eval.output_dir}/sweep.json, sweep.md, sweep.png")
        print(markdown(result), end="")
        return
    print(f"wrote {result['num_items']} scored items to {recipe.eval.output_dir}")
    for mode, totals in result["totals"].items():
        figures = ", ".join(f"{k} {v:.4f}" for k, v in totals.items() if isinstance(v, float))
        print(f"  {mode}: {figures}")


def cmd_bench(recipe: Recipe) -> None:
    import tempfile

    from toolkit.bench.run import run_bench
    from toolkit.cli.bench_worker import starter
    from toolkit.recipes.models import load_model

    with tempfile.TemporaryDirectory(prefix="bench-worker-") as folder:
        run_bench(load_model(recipe.model, recipe.graft), recipe.bench, recipe.decoding,
                  starter(recipe, folder))
    print(f"wrote the benchmark table, JSON and plot to {recipe.bench.output_dir}")
