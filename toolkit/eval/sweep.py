"""Accuracy vs temperature for several truncation samplers (top-n-sigma's central claim).

`run_sweep(am, config)`: for every temperature of `eval.temperatures` and every sampler of
`SAMPLERS` (plain sampling, top-p 0.9, min-p 0.1, top-n-sigma n=1, p-less, and EDT, whose
largest temperature t0 is the cell's temperature, theta the recipe's `decoding.edt.theta`),
`eval.sweep_samples`
replies per question, drawn with the seeds `decoding.seed + k` (the same for every cell), are
scored by exact match of their final number. Writes `sweep.json`, `sweep.md` (the table) and
`sweep.png` (accuracy vs temperature, one line per sampler; when matplotlib is importable) to
`eval.output_dir`.

Questions: a GSM8K-format JSONL (`eval.task: gsm8k`, `eval.data_path`) or, with
`eval.task: arithmetic`, the held-out arithmetic prompts of the built-in LPO task
(`toolkit.lpo.arith_writing`), in the model's chat template. A model without one (a base model)
gets them as 'Q: ...\nA:' after `SHOTS` solved questions of the task's train split (never a
held-out one), so it answers in the format the reply is read in: zero-shot, Gemma 3 270M
restates the sum ('Answer: 17 + 9') instead of answering.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from toolkit.core.answers import exact_match
from toolkit.graft.prompting import CHAT, encode
from toolkit.io import reports
from toolkit.methods.options import DecodingConfig, pinned, with_overrides

SHOTS = 3  # solved arithmetic questions before each question, for a model without a chat template

# name -> (decoding overrides, transformers generate() keywords)
SAMPLERS = {
    "sampling": ({}, {}),
    "top-p 0.9": ({"top_p": 0.9}, {}),
    "min-p 0.1": ({}, {"min_p": 0.1}),
    "top-n-sigma n=1": ({"top_n_sigma": {"enabled": True, "n": 1.0}}, {}),
    "p-less": ({"p_less": True}, {}),
    "EDT": ({"edt": {}}, {}),  # the cell's temperature becomes EDT's t0 (`_decoding`)
}


def questions(am: Any, config: Any) -> list[dict[str, Any]]:
    """[{prompt, answer}] for the sweep (see the module docstring)."""
    if config.task == "arithmetic":
        from toolkit.lpo.arith_writing import make_prompts

        chat = am.prompt_convention(config.chat_template) == CHAT
        limit = config.limit or 32
        records = [r for r in make_prompts(am.tokenizer, limit, "eval", chat=chat)
                   if r["kind"] == "arithmetic"]
        shots = "" if chat else "".join(
            f"Q: {r['question']}\nA: {r['answer']}\n\n"
            for r in make_prompts(am.tokenizer, SHOTS, "train", held_out=limit, chat=False)
            if r["kind"] == "arithmetic")
        return [{"question": r["question"], "prompt": shots + r["prompt"], "answer": r["answer"]}
                for r in records]
    from toolkit.eval.data import BadRows
    from toolkit.eval.generation import load, prompts_of

    items = load("gsm8k", config.data_path, BadRows(config.on_bad_row), config.limit)
    texts = prompts_of(am, "gsm8k", items, config)
    return [{"question": it["question"], "prompt": text, "answer": it["gold"]}
            for it, text in zip(items, texts, strict=True)]


def _decoding(base: DecodingConfig, overrides: dict, temperature: float, seed: int):
    if "edt" in overrides:  # EDT sets each step's temperature, at most t0
        overrides = {**overrides, "edt": {**overrides["edt"], "t0": temperature}}
    return pinned(with_overrides(base, do_sample=True, temperature=temperature, seed=seed,
                                 sled=False, dola=False, adaptive_temperature=False,
                                 **overrides))


@torch.no_grad()
def accuracy(am: Any, items: list[dict], decoding: DecodingConfig, hf: dict,
             batch_size: int) -> float:
    """Exact match of one reply per item ({prompt, answer}) under `decoding` and the
    transformers generate() keywords `hf`."""
    tok = am.tokenizer
    correct = 0.0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        enc = encode(tok, [it["prompt"] for it in chunk])
        out = am.generate(enc["input_ids"], enc["attention_mask"], decoding=decoding, **hf)
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        correct += sum(exact_match(t, it["answer"]) for t, it in zip(texts, chunk, strict=True))
    return correct / len(items)


def run_sweep(am: Any, config: Any, base: DecodingConfig) -> dict[str, Any]:
    """The accuracy table {sampler: {temperature: accuracy}}; also written to disk."""
    items = questions(am, config)
    seed0 = base.seed or 0
    table: dict[str, dict[str, float]] = {}
    cells = [(s, t) for s in SAMPLERS for t in config.temperatures]
    for sampler, temperature in tqdm(cells, desc="sweep", disable=not config.progress):
        overrides, hf = SAMPLERS[sampler]
        accs = [accuracy(am, items, _decoding(base, overrides, temperature, seed0 + k), hf,
                          config.batch_size) for k in range(config.sweep_samples)]
        table.setdefault(sampler, {})[f"{temperature:g}"] = sum(accs) / len(accs)
    greedy = pinned(with_overrides(base, do_sample=False, sled=False, dola=False,
                                   adaptive_temperature=False, top_n_sigma=False))
    result = {"task": config.task, "questions": len(items), "samples": config.sweep_samples,
              "greedy_accuracy": accuracy(am, items, greedy, {}, config.batch_size),
              "seeds": [seed0 + k for k in range(config.sweep_samples)],
              "max_new_tokens": base.max_new_tokens, "temperatures": list(config.temperatures),
              "accuracy": table}
    write_sweep(result, Path(config.output_dir))
    return result


def markdown(result: dict[str, Any]) -> str:
    temps = [f"{t:g}" for t in result["temperatures"]]
    lines = ["| sampler | " + " | ".join(f"T={t}" for t in temps) + " |",
             "|---|" + "---:|" * len(temps)]
    for sampler, row in result["accuracy"].items():
        lines.append(f"| {sampler} | " + " | ".join(f"{row[t]:.3f}" for t in temps) + " |")
    lines.append(f"\ngreedy (no sampling): {result['greedy_accuracy']:.3f}")
    return "\n".join(lines) + "\n"


def write_sweep(result: dict[str, Any], out: Path) -> list[Path]:
    from toolkit.eval.report import FILES, KEY, matplotlib_available

    reports.check(out, FILES, KEY)
    written = [
        reports.write_text(out, "sweep.json", KEY, json.dumps(result, indent=1)),
        reports.write_text(
            out, "sweep.md", KEY,
            f"# Accuracy vs temperature ({result['task']}, {result['questions']} questions x "
            f"{result['samples']} samples, seeds {result['seeds']})\n\n" + markdown(result)),
    ]
    if matplotlib_available():
        written.append(reports.write(out, "sweep.png", KEY, lambda tmp: _plot(result, tmp)))
    return written


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temps = result["temperatures"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for sampler, row in result["accuracy"].items():
        ax.plot(temps, [row[f"{t:g}"] for t in temps], marker="o", label=sampler)
    ax.set_xlabel("temperature")
    ax.set_ylabel("accuracy (exact match)")
    ax.set_title(f"{result['task']}: accuracy vs temperature")
    ax.axhline(result["greedy_accuracy"], color="grey", linestyle="--", label="greedy")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
