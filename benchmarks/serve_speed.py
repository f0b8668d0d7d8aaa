"""Tokens/s of a checkpoint served by vLLM against AugmentedModel.generate, plain and with SLED.

    python benchmarks/serve_speed.py --out bench-results/serve [--preset smollm2-135m-instruct]
        [--concurrency 1 8 32 64] [--tokens 64] [--tiny | --random-shape llama-7b]

Side by side in one run; on a CPU on one thread for both (OMP_NUM_THREADS=1; vLLM's CPU worker
bound to one core), on a CUDA GPU (when torch sees one) on GPU 0 in bfloat16, vLLM given 60% of
its memory. For each concurrency C, C requests of `--tokens` greedy tokens each
(`ignore_eos`, so every reply has that length) sent at once to vLLM's OpenAI server, and
`AugmentedModel.generate` on the same C prompts as one batch (`min_new_tokens` = the same
length). tokens/s = C x tokens / wall seconds. Prints a table of tokens/s and the ratios
(vLLM / generate for plain and SLED; SLED / plain inside vLLM and in generate) and writes
serve_speed.json. `--tiny` runs the same on the tiny test checkpoint (no download, seconds);
`--random-shape` on a named shape of `toolkit.testing.shapes` with seeded random weights and the
test tokenizer (no download: for a GPU machine without network, e.g. benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
SERVER = ["--max-model-len", "256", "--max-num-seqs", "64", "--seed", "0"]
ON_CPU = ["--dtype", "float32", "--gpu-memory-utilization", "0.15"]
ON_GPU = ["--dtype", "bfloat16", "--gpu-memory-utilization", "0.6"]
QUESTIONS = ["What is the capital of France?", "Name a large ocean.", "Write a haiku about rain.",
             "What is 12 + 7?", "Tell me a fact about the Moon.", "Who wrote Hamlet?",
             "Describe a cat in one sentence.", "What colour is the sky?"]
MODES = {"plain": {"sled": "false"}, "sled": {"sled": "true"}}


def random_base(shape: str, work: Path, dtype: str) -> Path:
    """A base of the named shape with seeded random weights, saved with the test tokenizer."""
    from toolkit.testing.shapes import random_model
    from toolkit.testing.tokenizer import build_tokenizer

    base = work / f"base-{shape}"
    random_model(shape, dtype).save_pretrained(base, safe_serialization=True)
    build_tokenizer().save_pretrained(base)
    return base


def checkpoint(args, work: Path, gpu: bool):
    """(AugmentedModel, checkpoint dir, prompt id lists) for the benchmark."""
    import torch

    from toolkit import AugmentedModel
    from toolkit.testing.serving import PROMPTS

    if args.tiny:
        from toolkit.testing.serving import save_serving_checkpoint

        ckpt = save_serving_checkpoint(work)
        prompts = PROMPTS
    elif args.random_shape:
        ckpt = AugmentedModel.graft(random_base(
            args.random_shape, work, "bfloat16" if gpu else "float32")).save_pretrained(
            work / "ckpt")
        prompts = PROMPTS
    else:
        from toolkit.sources.presets import prepare_preset

        base = prepare_preset(args.preset, say=lambda line: print(line, file=sys.stderr))
        ckpt = AugmentedModel.graft(base).save_pretrained(work / "ckpt")
        prompts = None
    am = AugmentedModel.from_pretrained(
        ckpt, **({"device_map": "cuda", "dtype": torch.bfloat16} if gpu else {}))
    if prompts is None:
        prompts = [am.encode(q).input_ids[0].tolist() for q in QUESTIONS]
    return am, ckpt, prompts


def served_rate(url: str, prompts: list[list[int]], concurrency: int, tokens: int,
                xargs: dict) -> float:
    from toolkit.serving.server import post

    def one(i: int) -> int:
        status, answer = post(url, "/v1/completions", {
            "prompt": prompts[i % len(prompts)], "max_tokens": tokens, "temperature": 0,
            "ignore_eos": True, "vllm_xargs": {**xargs, "top_n_sigma": "false",
                                               "adaptive_temperature": "false"}})
        assert status == 200, answer
        return answer["usage"]["completion_tokens"]

    one(0)  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        produced = sum(pool.map(one, range(concurrency)))
    return produced / (time.perf_counter() - start)


def generate_rate(am, prompts: list[list[int]], concurrency: int, tokens: int,
                  sled: bool) -> float:
    from toolkit.graft.prompting import left_pad, padding_id

    rows = [prompts[i % len(prompts)] for i in range(concurrency)]
    ids, mask = left_pad(rows, padding_id(am.tokenizer))
    options = dict(do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens, sled=sled,
                   top_n_sigma=False, adaptive_temperature=False)
    ids, mask = ids.to(am.device), mask.to(am.device)
    am.generate(ids[:1], mask[:1], **{**options, "max_new_tokens": 2, "min_new_tokens": 2})
    _sync()
    start = time.perf_counter()
    out = am.generate(ids, mask, **options)
    _sync()
    return (out.shape[1] - ids.shape[1]) * concurrency / (time.perf_counter() - start)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def table(rows: list[dict]) -> str:
    head = ("| concurrency | generate plain | generate SLED | vLLM plain | vLLM SLED | "
            "vLLM/generate plain | vLLM/generate SLED | SLED/plain vLLM | SLED/plain generate |")
    lines = [head, "|" + "---:|" * 9]
    for r in rows:
        lines.append(
            f"| {r['concurrency']} | {r['generate_plain']:.1f} | {r['generate_sled']:.1f} | "
            f"{r['vllm_plain']:.1f} | {r['vllm_sled']:.1f} | "
            f"{r['vllm_plain'] / r['generate_plain']:.2f}x | "
            f"{r['vllm_sled'] / r['generate_sled']:.2f}x | "
            f"{r['vllm_plain'] / r['vllm_sled']:.2f}x | "
            f"{r['generate_plain'] / r['generate_sled']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="smollm2-135m-instruct")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--tokens", type=int, default=64)
    shapes = parser.add_mutually_exclusive_group()
    shapes.add_argument("--tiny", action="store_true")
    shapes.add_argument("--random-shape", help="a named shape of toolkit.testing.shapes")
    args = parser.parse_args(argv)
    import torch

    from toolkit.serving.server import running

    gpu = torch.cuda.is_available()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    am, ckpt, prompts = checkpoint(args, args.out / "work", gpu)
    env = {} if gpu else {"OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "0"}
    device = torch.cuda.get_device_name(0) if gpu else "CPU, 1 thread"
    rows = [{"concurrency": c} for c in args.concurrency]
    started = time.perf_counter()
    with running(ckpt, extra=[*SERVER, *(ON_GPU if gpu else ON_CPU)], env=env, log=args.out / "vllm.log") as url:
        for row in rows:
            for mode, xargs in MODES.items():
                row[f"vllm_{mode}"] = served_rate(url, prompts, row["concurrency"],
                                                  args.tokens, xargs)
    for row in rows:
        for mode in MODES:
            row[f"generate_{mode}"] = generate_rate(am, prompts, row["concurrency"],
                                                    args.tokens, mode == "sled")
    text = table(rows)
    print(f"tokens/s, {args.tokens} greedy tokens per request, {device}, "
          f"load {os.getloadavg()[0]:.1f}, {time.perf_counter() - started:.0f} s\n{text}")
    (args.out / "serve_speed.json").write_text(json.dumps(
        {"model": "tiny" if args.tiny else args.random_shape or args.preset, "device": device,
         "tokens": args.tokens, "rows": rows},
        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
