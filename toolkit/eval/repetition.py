"""Repetition of generations, over generated token ids (tokenizer-independent of whitespace).

distinct-n (Li et al. 2016): unique n-grams / all n-grams, pooled over a set of generations.
rep-n (Welleck et al. 2020, seq-rep-n): per generation, the fraction of its n-grams that repeat
an n-gram seen earlier in it, i.e. 1 - unique/total; averaged over generations.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

ORDERS = (1, 2, 3, 4)


def ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngram_rate(tokens: Sequence[Hashable], n: int) -> float:
    """1 - unique/total n-grams of one sequence; 0.0 when it has no n-gram."""
    grams = ngrams(tokens, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(generations: Sequence[Sequence[Hashable]], n: int) -> float:
    """Unique n-grams over all n-grams, pooled over the generations; 0.0 when there is none."""
    pooled = [g for tokens in generations for g in ngrams(tokens, n)]
    return len(set(pooled)) / len(pooled) if pooled else 0.0


def repetition_metrics(generations: Sequence[Sequence[Hashable]]) -> dict[str, float]:
    """distinct-1..4 (pooled) and rep-1..4 (mean over generations)."""
    out: dict[str, float] = {}
    for n in ORDERS:
        out[f"distinct_{n}"] = distinct_n(generations, n)
    for n in ORDERS:
        rates = [repeated_ngram_rate(g, n) for g in generations]
        out[f"rep_{n}"] = sum(rates) / len(rates) if rates else 0.0
    return out
