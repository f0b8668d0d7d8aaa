"""The built-in arithmetic + writing LPO task: seeded disjoint prompts, exact-match and
diversity rewards (golden values by hand, and properties)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolkit.lpo.arith_writing import ArithWritingReward, diversity_rewards, make_prompts


class ChatTokenizer:
    chat_template = "x"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return f"<user>{messages[0]['content']}</user><assistant>"


def test_prompts_are_seeded_balanced_and_held_out_never_in_training():
    train = make_prompts(None, 40, "train", seed=0, held_out=12)
    held = make_prompts(None, 12, "eval", seed=0)
    assert [r["kind"] for r in held] == ["arithmetic"] * 12 + ["writing"] * 12
    assert {r["question"] for r in train}.isdisjoint({r["question"] for r in held})
    assert make_prompts(None, 12, "eval", seed=0) == held
    assert make_prompts(None, 12, "eval", seed=1) != held
    first = held[0]
    a, b = (int(x) for x in first["question"].split("?")[0].removeprefix("What is ").split(" + "))
    assert first["answer"] == str(a + b) and first["prompt"] == f"Q: {first['question']}\nA:"
    assert len({r["id"] for r in train + held}) == len(train + held)


def test_chat_template_is_used_when_the_tokenizer_has_one():
    record = make_prompts(ChatTokenizer(), 1, "eval")[1]
    assert record["prompt"] == f"<user>{record['question']}</user><assistant>"


def test_diversity_golden_values():
    # bigrams: a = (x y)(y z), b = (x y)(y w), c = (p q)(q p)(p q): the (x y) of a and b is
    # shared; c repeats (p q) once.
    assert diversity_rewards(["x y z", "x y w", "p q p q"]) == pytest.approx([0.5, 0.5, 1 - 1 / 3])
    assert diversity_rewards(["same words here"] * 4) == [0.0] * 4
    assert diversity_rewards(["one", ""]) == [0.0, 0.0]
    assert diversity_rewards(["a b a b a b"], penalty=0.5) == pytest.approx([1 - 0.5 * 3 / 5])


@given(st.lists(st.text(alphabet="abc ", max_size=20), min_size=1, max_size=6),
       st.floats(min_value=0, max_value=2))
def test_diversity_bounds_and_order_invariance(replies, penalty):
    values = diversity_rewards(replies, penalty=penalty)
    assert all(-penalty - 1e-9 <= v <= 1 + 1e-9 for v in values)
    assert diversity_rewards(replies[::-1], penalty=penalty)[::-1] == pytest.approx(values)


def test_reward_scores_arithmetic_by_exact_match_and_groups_writing_by_prompt():
    records = [
        {"id": "a", "kind": "arithmetic", "answer": "26"},
        {"id": "a", "kind": "arithmetic", "answer": "26"},
        {"id": "w1", "kind": "writing"},
        {"id": "w1", "kind": "writing"},
        {"id": "w2", "kind": "writing"},
    ]
    replies = ["17 + 9 = 26", "The answer is 25.", "x y z", "x y z", "x y z"]
    scores = ArithWritingReward()(None, replies, records)
    # w1's two identical replies share every bigram; w2 is alone in its group
    assert scores == [1.0, 0.0, 0.0, 0.0, 1.0]
