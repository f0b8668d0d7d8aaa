"""Generation tasks: GSM8K-format and StrategyQA-style accuracy, and repetition of replies.

Each mode is a `DecodingConfig` derived from the recipe's `decoding` section by
`toolkit.options.mode_decoding`: greedy (every method off), one mode per registered method
(sled, dola, top_n_sigma, adaptive; sampling ones with a fixed seed) and composed (SLED +
top-n-sigma + adaptive temperature, sampling). Prompts are left padded and generated in
batches through `AugmentedModel.generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from toolkit.eval import answers
from toolkit.eval.data import BadRows, jsonl_rows, parse_rows
from toolkit.eval.repetition import repetition_metrics
from toolkit.options import DecodingConfig, mode_decoding

METRICS = {"gsm8k": ("accuracy",), "strategyqa": ("accuracy",), "repetition": ()}


def _parse_gsm8k(row: dict[str, Any]) -> dict[str, Any]:
    question = str(row.get("question") or "").strip()
    if not question:
        raise ValueError("missing or empty 'question'")
    return {"question": question, "gold": answers.gold_number(str(row.get("answer", "")))}


def _parse_strategyqa(row: dict[str, Any]) -> dict[str, Any]:
    question = str(row.get("question") or "").strip()
    if not question:
        raise ValueError("missing or empty 'question'")
    if "answer" not in row:
        raise ValueError("missing 'answer'")
    return {"question": question, "gold": answers.gold_yes_no(row["answer"])}


def _parse_prompt(row: dict[str, Any]) -> dict[str, Any]:
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("missing or empty 'prompt'")
    return {"question": prompt, "gold": None}


PARSERS = {"gsm8k": _parse_gsm8k, "strategyqa": _parse_strategyqa, "repetition": _parse_prompt}


def load(task: str, path: str, bad: BadRows, limit: int | None = None) -> list[dict[str, Any]]:
    return parse_rows(jsonl_rows(path, bad), path, PARSERS[task], bad, limit)


def prompt_of(task: str, item: dict[str, Any], template: str) -> str:
    """Repetition prompts are used as written; questions go through the template."""
    return item["question"] if task == "repetition" else template.replace("{question}",
                                                                          item["question"])


def generate_all(
    am: Any, prompts: Sequence[str], decoding: DecodingConfig, batch_size: int,
    progress: bool = False, desc: str = "generating",
) -> list[tuple[str, list[int]]]:
    """(decoded reply, reply token ids) per prompt; batches are left padded."""
    tok = am.tokenizer
    old_side, tok.padding_side = tok.padding_side, "left"
    device = am.base.get_input_embeddings().weight.device
    replies: list[tuple[str, list[int]]] = []
    try:
        for i in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress):
            enc = tok(list(prompts[i : i + batch_size]), return_tensors="pt", padding=True)
            ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            with torch.no_grad():
                out = am.generate(ids, attention_mask=mask, decoding=decoding)
            for row in out[:, ids.shape[1] :].tolist():
                row = _strip_special(row, tok)
                replies.append((tok.decode(row, skip_special_tokens=True), row))
    finally:
        tok.padding_side = old_side
    return replies


def _strip_special(row: list[int], tok: Any) -> list[int]:
    """Reply tokens up to the first EOS / pad token."""
    stops = {t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None}
    for j, t in enumerate(row):
        if t in stops:
            return row[:j]
    return row


def item_result(task: str, item: dict[str, Any], reply: str) -> dict[str, Any]:
    """Extracted answer and correctness of one reply (repetition: just the reply)."""
    text = answers.truncate(reply)
    if task == "repetition":
        return {"reply": reply}
    extract = answers.extract_number if task == "gsm8k" else answers.extract_yes_no
    predicted = extract(text)
    return {"reply": reply, "predicted": predicted, "gold": item["gold"],
            "accuracy": float(predicted is not None and predicted == item["gold"])}


def run_mode(
    am: Any, task: str, items: list[dict[str, Any]], mode: str, config: Any,
    base: DecodingConfig,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per-item results and totals (accuracy where defined, plus repetition metrics)."""
    decoding = mode_decoding(base, mode)
    prompts = [prompt_of(task, it, config.prompt_template) for it in items]
    replies = generate_all(am, prompts, decoding, config.batch_size, config.progress,
                           desc=f"{task} {mode}")
    results = [item_result(task, it, text) for it, (text, _) in zip(items, replies, strict=True)]
    totals = repetition_metrics([ids for _, ids in replies])
    if task != "repetition":
        totals["accuracy"] = sum(r["accuracy"] for r in results) / len(results)
    return results, totals
