"""Generation tasks: GSM8K-format and StrategyQA-style accuracy, and repetition of replies.

Each mode is a `DecodingConfig` derived from the recipe's `decoding` section by
`toolkit.methods.options.mode_decoding`: greedy (every method off), one mode per registered method
(plugins included; sampling ones with a fixed seed) and composed (SLED +
top-n-sigma + adaptive temperature, sampling). Prompts follow `eval.chat_template` (a user
turn of the model's chat template by default, when it has one), are left padded and generated
in batches through `AugmentedModel.generate`.
"""

from __future__ import annotations

from typing import Any

from toolkit.core import answers
from toolkit.eval.data import KEY, BadRows, parse_rows
from toolkit.eval.repetition import repetition_metrics
from toolkit.graft.batching import generate_replies
from toolkit.graft.prompting import CHAT
from toolkit.io.jsonl import read_rows
from toolkit.methods.options import DecodingConfig, mode_decoding

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
    return parse_rows(read_rows(path, bad, KEY), path, PARSERS[task], bad, limit)


def prompt_of(task: str, item: dict[str, Any], template: str) -> str:
    """Repetition prompts are used as written; questions go through the template."""
    return item["question"] if task == "repetition" else template.replace("{question}",
                                                                          item["question"])


def item_result(task: str, item: dict[str, Any], reply: str) -> dict[str, Any]:
    """Extracted answer and correctness of one reply (repetition: just the reply)."""
    if task == "repetition":
        return {"reply": reply}
    if task == "gsm8k":
        predicted = answers.predicted_number(reply)
    else:
        predicted = answers.extract_yes_no(answers.truncate(reply))
    return {"reply": reply, "predicted": predicted, "gold": item["gold"],
            "accuracy": float(predicted is not None and predicted == item["gold"])}


def prompts_of(am: Any, task: str, items: list[dict[str, Any]], config: Any) -> list[str]:
    """The prompt texts of the items as the model reads them: through `eval.template` (by
    default `Q: {question}\\nA:`, or the bare question under a chat template), then wrapped
    as a user turn when `eval.chat_template` resolves to the template."""
    chat = am.prompt_convention(config.chat_template) == CHAT
    template = config.template or ("{question}" if chat else config.prompt_template)
    return am.render_prompts([prompt_of(task, it, template) for it in items], config.chat_template)


def run_mode(
    am: Any, task: str, items: list[dict[str, Any]], mode: str, config: Any,
    base: DecodingConfig,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per-item results and totals (accuracy where defined, plus repetition metrics)."""
    decoding = mode_decoding(base, mode)
    prompts = prompts_of(am, task, items, config)
    replies = generate_replies(am, prompts, decoding, config.batch_size,
                               progress=config.progress, desc=f"{task} {mode}")
    results = [item_result(task, it, r.text) for it, r in zip(items, replies, strict=True)]
    totals = repetition_metrics([r.ids for r in replies])
    if task != "repetition":
        totals["accuracy"] = sum(r["accuracy"] for r in results) / len(results)
    return results, totals
