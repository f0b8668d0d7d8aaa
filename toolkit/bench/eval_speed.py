"""Multiple-choice scoring throughput (TruthfulQA style) for the bench: questions/s, answers/s.

Questions and answers are random token ids (no tokenizer needed), scored by the evaluator's own
`score_encoded` with the truthfulqa preset of each method (SLED op_T=10, lower bound -100; DoLa
without the relative-top filter), once with the shared prefix (each question's prompt once into
a KV cache, `eval.shared_prefix`, the default) and once rerunning it for every answer. Each
mode scores every question in its own forward passes; the runs take turns, their order rotating
from repeat to repeat, and medians are reported.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from toolkit import methods
from toolkit.bench.config import BenchConfig
from toolkit.methods.options import DecodingConfig, apply_preset


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


def _score_all(am: Any, pairs: list, mode: str, decoding: DecodingConfig, batch: int,
               shared: bool) -> float:
    from toolkit.eval.scoring import score_encoded

    start = time.perf_counter()
    score_encoded(am, pairs, [mode], decoding, batch, shared_prefix=shared)
    return time.perf_counter() - start


def run_eval_bench(am: Any, config: BenchConfig, decoding: DecodingConfig) -> list[dict[str, Any]]:
    """Two rows per scoring mode (greedy and every registered method that scores, or those of
    them in `bench.modes`), the prompt rerun per answer then shared: median seconds,
    questions/s, answers/s, ratio to greedy run the same way, speed-up over rerunning the
    prompt (1.0 on the rerun row)."""
    questions = synthetic_questions(config, am.vocab_size)
    pairs = [pair for answers in questions for pair in answers]
    scoring = apply_preset(decoding, "truthfulqa")
    chosen = set(config.modes) | {methods.GREEDY}
    runs = [(m, shared) for m in methods.scoring_modes() if not config.modes or m in chosen
            for shared in (False, True)]
    seconds: dict[tuple[str, bool], list[float]] = {run: [] for run in runs}
    for r in range(-config.warmup, config.repeats):
        shift = r % len(runs)
        for mode, shared in runs[shift:] + runs[:shift]:
            took = _score_all(am, pairs, mode, scoring, config.eval_batch_size, shared)
            if r >= 0:
                seconds[mode, shared].append(took)
    median = {run: statistics.median(times) for run, times in seconds.items()}
    return [{"mode": mode, "shared_prefix": shared, "seconds": median[mode, shared],
             "questions_per_s": len(questions) / median[mode, shared],
             "answers_per_s": len(pairs) / median[mode, shared],
             "ratio_to_greedy": median[mode, shared] / median[methods.GREEDY, shared],
             "speedup": median[mode, False] / median[mode, shared]} for mode, shared in runs]
