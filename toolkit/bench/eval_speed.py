"""Multiple-choice scoring throughput (TruthfulQA style) for the bench: questions/s, answers/s.

Questions and answers are random token ids (no tokenizer needed), scored by the evaluator's own
`score_batch` with the truthfulqa preset of each method (SLED op_T=10, lower bound -100; DoLa
without the relative-top filter). Each mode scores every question in its own forward passes;
the modes take turns, their order rotating from repeat to repeat, and medians are reported.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from toolkit import methods
from toolkit.bench.config import BenchConfig
from toolkit.options import DecodingConfig, apply_preset


def synthetic_questions(config: BenchConfig, vocab: int) -> list[list[tuple[list[int], int]]]:
    """Per question, its answers as (prompt + answer ids, index of the first answer token)."""
    generator = torch.Generator().manual_seed(config.seed + 1)
    questions = []
    for _ in range(config.eval_questions):
        prompt = torch.randint(1, vocab, (config.eval_prompt_len,), generator=generator).tolist()
        answers = torch.randint(1, vocab, (config.eval_answers, config.eval_answer_len),
                                generator=generator).tolist()
        questions.append([(prompt + answer, len(prompt)) for answer in answers])
    return questions


def _score_all(am: Any, pairs: list, mode: str, decoding: DecodingConfig, batch: int) -> float:
    from toolkit.eval.scoring import score_batch

    start = time.perf_counter()
    for i in range(0, len(pairs), batch):
        score_batch(am, pairs[i : i + batch], [mode], decoding)
    return time.perf_counter() - start


def run_eval_bench(am: Any, config: BenchConfig, decoding: DecodingConfig) -> list[dict[str, Any]]:
    """One row per scoring mode (greedy and every registered method that scores, or those of
    them in `bench.modes`): median seconds, questions/s, answers/s, ratio to greedy."""
    questions = synthetic_questions(config, am.vocab_size)
    pairs = [pair for answers in questions for pair in answers]
    scoring = apply_preset(decoding, "truthfulqa")
    chosen = set(config.modes) | {methods.GREEDY}
    modes = [m for m in methods.scoring_modes() if not config.modes or m in chosen]
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(-config.warmup, config.repeats):
        shift = r % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            took = _score_all(am, pairs, mode, scoring, config.eval_batch_size)
            if r >= 0:
                seconds[mode].append(took)
    rows = []
    for mode in modes:
        median = statistics.median(seconds[mode])
        rows.append({"mode": mode, "seconds": median,
                     "questions_per_s": len(questions) / median,
                     "answers_per_s": len(pairs) / median,
                     "ratio_to_greedy": median / statistics.median(seconds[methods.GREEDY])})
    return rows
