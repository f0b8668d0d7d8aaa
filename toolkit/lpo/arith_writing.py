"""A built-in LPO task for a real chat model: arithmetic questions and open-ended writing.

Two prompt kinds, generated from a seed (no dataset download):
- arithmetic: "What is a + b? Answer with the number only." with a, b in 0..20. Reward: exact
  match of the reply's final number with a + b (`toolkit.core.answers.exact_match`). Sampling
  noise only hurts here, so a low temperature is best.
- writing: "Write a short poem about a lighthouse keeper." and similar (8 forms x 32 subjects).
  Reward: `diversity_rewards`, which favours varied, non-repetitive text across the N samples
  of one prompt; identical samples score 0, so a high temperature is best.

Prompts are split without overlap: the shuffled pool of each kind gives the held-out prompts
first and the training prompts after them, so held-out prompts are never seen in training.
With a chat template the prompt is the templated user turn (`toolkit.graft.prompting`, as
`generate` wraps plain prompts); otherwise, or with `chat=False`, 'Q: ...\\nA:'.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from toolkit.core.answers import exact_match
from toolkit.graft.prompting import has_template
from toolkit.graft.prompting import render as render_prompts

KINDS = ("arithmetic", "writing")
ARITHMETIC = "What is {a} + {b}? Answer with the number only."
MAX_OPERAND = 20
WRITING_FORMS = (
    "Write a short story about {s}.",
    "Write a short poem about {s}.",
    "Describe {s} in a few sentences.",
    "Write the opening of a fairy tale about {s}.",
    "Write a diary entry about {s}.",
    "Invent a legend about {s}.",
    "Write a song verse about {s}.",
    "Write a letter to a friend about {s}.",
)
SUBJECTS = (
    "a lighthouse keeper", "a dragon who loves tea", "the ocean at night", "a robot learning to paint",
    "a city in the clouds", "a lost kitten", "an old oak tree", "a journey to the moon",
    "a haunted library", "a brave little mouse", "the first snow of winter", "a secret garden",
    "a clockmaker", "a talking river", "a girl who can fly", "a forgotten island",
    "a giant made of stone", "a summer festival", "a fox and a crow", "a train through the desert",
    "a wizard's apprentice", "a storm at sea", "a village of bakers", "a star that fell to earth",
    "a shy ghost", "the last day of school", "a pirate's map", "a mountain village",
    "a magic violin", "a friendly monster", "a king without a crown", "a garden on Mars",
)


def _pool(kind: str, seed: int) -> list[dict]:
    if kind == "arithmetic":
        items = [{"question": ARITHMETIC.format(a=a, b=b), "answer": str(a + b)}
                 for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]
    else:
        items = [{"question": form.format(s=s)} for form in WRITING_FORMS for s in SUBJECTS]
    random.Random(f"{seed}:{kind}").shuffle(items)
    return items


def render(tokenizer, question: str, chat: bool = True) -> str:
    """The prompt text: the chat template's user turn when `chat` and the tokenizer has one."""
    if chat and has_template(tokenizer):
        return render_prompts(tokenizer, [question], chat=True)[0]
    return f"Q: {question}\nA:"


def make_prompts(tokenizer, per_kind: int, split: str, seed: int = 0,
                 held_out: int | None = None, chat: bool = True) -> list[dict]:
    """`per_kind` prompts of each kind (arithmetic first) from the `split` ('train' or 'eval').

    The eval split is the first `held_out` (default `per_kind`) items of each kind's shuffled
    pool, the train split the items after those, so the two never share a prompt. `chat`:
    use the tokenizer's chat template when it has one (`render`).
    """
    held_out = per_kind if held_out is None else held_out
    start = 0 if split == "eval" else held_out
    records = []
    for kind in KINDS:
        pool = _pool(kind, seed)
        if start + per_kind > len(pool):
            raise ValueError(f"only {len(pool)} {kind} prompts exist; ask for fewer")
        for i, item in enumerate(pool[start : start + per_kind]):
            records.append({"id": f"{split}-{kind}-{i}", "kind": kind,
                            "prompt": render(tokenizer, item["question"], chat), **item})
    return records


def ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = text.lower().split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def diversity_rewards(replies: list[str], n: int = 2, penalty: float = 1.0) -> list[float]:
    """Per reply of one prompt's N samples: novelty - penalty * repetition, in [-penalty, 1].

    novelty = the share of the reply's word n-grams (lower-cased, whitespace split) that occur
    in no other sample of the group; repetition = the share of its n-grams that repeat an
    earlier n-gram of the same reply. A reply with no n-gram scores 0. N identical samples all
    score 0; N samples sharing no n-gram and repeating none all score 1.
    """
    grams = [ngrams(r, n) for r in replies]
    owners: dict[tuple, int] = Counter(g for gs in grams for g in set(gs))
    out = []
    for gs in grams:
        if not gs:
            out.append(0.0)
            continue
        own = Counter(gs)
        novel = sum(count for g, count in own.items() if owners[g] == 1)
        repeated = sum(count - 1 for count in own.values())
        out.append(novel / len(gs) - penalty * repeated / len(gs))
    return out


class ArithWritingReward:
    """The task's batch reward (see `toolkit.lpo.rewards`): exact match for arithmetic, the
    group's `diversity_rewards` for writing (replies grouped by their prompt's id)."""

    def __init__(self, ngram: int = 2, penalty: float = 1.0):
        self.ngram, self.penalty = ngram, penalty

    def __call__(self, prompts, replies, records) -> list[float]:
        scores = [0.0] * len(records)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, (reply, record) in enumerate(zip(replies, records, strict=True)):
            if record["kind"] == "arithmetic":
                scores[i] = exact_match(reply, record["answer"])
            else:
                groups[record["id"]].append(i)
        for members in groups.values():
            values = diversity_rewards([replies[i] for i in members], self.ngram, self.penalty)
            for i, value in zip(members, values, strict=True):
                scores[i] = value
        return scores
