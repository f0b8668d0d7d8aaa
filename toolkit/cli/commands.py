"""One function per subcommand; each takes a validated `Recipe`."""

from __future__ import annotations

from toolkit.cli import lpo, predict
from toolkit.cli.checks import parallel
from toolkit.graft.batching import generate_replies
from toolkit.jsonl import read_prompts
from toolkit.recipes.models import load_model
from toolkit.recipes.schema import Recipe


def cmd_graft(recipe: Recipe) -> None:
    model = load_model(recipe.model, recipe.graft)
    model.decoding = recipe.decoding
    print(f"saved augmented checkpoint to {model.save_pretrained(recipe.output_dir)}")


def cmd_generate(recipe: Recipe) -> None:
    gen = recipe.generate
    if gen.input:
        records = [r for _, r in read_prompts(gen.input, gen.prompt_field, key="generate.input")]
    else:
        records = [{gen.prompt_field: p} for p in gen.prompts]
    model = load_model(recipe.model, recipe.graft)
    prompts = [r[gen.prompt_field] for r in records]
    if parallel(recipe):
        written = predict.predict_parallel(
            model,
            records,
            gen.prompt_field,
            recipe.decoding,
            gen.batch_size,
            recipe.trainer,
            gen.output,
        )
        if written is not None:
            print(f"wrote {len(records)} completions to {written}")
        return
    if gen.output:
        path, earlier = predict.generate_to_file(
            model, records, gen.prompt_field, recipe.decoding, gen.batch_size, gen.output,
            force=gen.force_resume,
        )
        resumed = f" ({earlier} more were there from an earlier run)" if earlier else ""
        print(f"wrote {len(records) - earlier} completions to {path}{resumed}")
    elif len(prompts) == 1:
        _stream_one(model, prompts[0], recipe)
    else:
        replies = generate_replies(model, prompts, recipe.decoding, gen.batch_size)
        for prompt, reply in zip(prompts, replies, strict=True):
            print(f"--- {prompt!r}\n{reply.text}")


def _stream_one(model, prompt: str, recipe: Recipe) -> str:
    from transformers import TextStreamer

    streamer = TextStreamer(model.tokenizer, skip_prompt=True, skip_special_tokens=True)
    print(prompt, end="", flush=True)
    return generate_replies(model, [prompt], recipe.decoding, 1, streamer=streamer)[0].text


def cmd_collect(recipe: Recipe) -> None:
    model = load_model(recipe.model, recipe.graft)
    lpo.collect(model, recipe)


def cmd_train(recipe: Recipe) -> None:
    model = load_model(recipe.model, recipe.graft)
    lpo.train(model, recipe)


def cmd_run(recipe: Recipe) -> None:
    lpo.run_pipeline(recipe)


def cmd_eval(recipe: Recipe) -> None:
    from toolkit.eval.run import run_eval

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
    from toolkit.bench.run import run_bench

    run_bench(load_model(recipe.model, recipe.graft), recipe.bench, recipe.decoding)
    print(f"wrote the benchmark table, JSON and plot to {recipe.bench.output_dir}")
