"""Preference-pair collection: batching, records, drops, resume after an interruption."""

import json

import pytest
import torch

from toolkit.core.errors import DataError
from toolkit.graft.augmented import AugmentedModel
from toolkit.lpo import collect, pairs
from toolkit.lpo.config import CollectConfig, RewardConfig
from toolkit.methods.options import GraftConfig, HeadConfig

PROMPTS = [{"id": f"p{i}", "prompt": text} for i, text in enumerate(
    ["The quick brown fox", "What is the capital", "Two plus two", "A language model",
     "The river runs", "She sells sea", "If it rains", "Question: how many legs"])]


def _config(**kw):
    base = dict(num_replies=4, prompts_per_batch=3, max_new_tokens=6, seed=3,
                reward=RewardConfig(kind="repetition", ngram=1))
    base.update(kw)
    return CollectConfig(**base)


@pytest.fixture(scope="module")
def model(tiny_llama_dir):
    torch.manual_seed(0)
    return AugmentedModel.graft(tiny_llama_dir, GraftConfig(head=HeadConfig(hidden_size=16)))


def test_pairs_records_and_batching(model, tmp_path, monkeypatch):
    calls = []
    generate = model.generate

    def counting(input_ids, *args, **kwargs):
        calls.append(input_ids.shape[0])
        return generate(input_ids, *args, **kwargs)

    monkeypatch.setattr(model, "generate", counting)
    out = tmp_path / "pairs.jsonl"
    stats = collect.collect_pairs(model, PROMPTS, _config(), out, progress=False)
    assert calls == [12, 12, 8]  # all N replies of up to 3 prompts per generate call
    assert stats.pairs + stats.dropped == 8 and stats.replies == 32 and stats.skipped == 0
    records = pairs.read_pairs(out)
    assert len(records) == stats.pairs >= 2
    tok = model.tokenizer
    for rec in records:
        assert rec["chosen_reward"] == max(rec["rewards"]) > min(rec["rewards"])
        assert rec["rejected_reward"] == min(rec["rewards"])
        assert rec["prompt_ids"] == tok(rec["prompt"])["input_ids"]
        for side in ("chosen", "rejected"):
            ids, tau = rec[f"{side}_ids"], rec[f"{side}_tau"]
            assert 1 <= len(ids) == len(tau) <= 6
            assert len(set(tau)) == 1 and 0 <= tau[0] < 6  # sequence level: one temperature
            assert rec[side] == tok.decode(ids, skip_special_tokens=True)
            assert -float(len(ids) - len(set(ids))) == rec[f"{side}_reward"]
        assert rec["metadata"]["temperatures"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_token_level_head_records_a_temperature_per_token(tiny_llama_dir, tmp_path):
    torch.manual_seed(0)
    model = AugmentedModel.graft(tiny_llama_dir, GraftConfig(head=HeadConfig(hidden_size=16,
                                                                             level="token")))
    out = tmp_path / "pairs.jsonl"
    collect.collect_pairs(model, PROMPTS, _config(max_new_tokens=8), out, progress=False)
    taus = [t for rec in pairs.read_pairs(out) for t in (rec["chosen_tau"], rec["rejected_tau"])]
    assert any(len(set(t)) > 1 for t in taus)


def test_all_equal_rewards_are_dropped_and_skipped_on_rerun(model, tmp_path):
    out = tmp_path / "pairs.jsonl"

    def flat(prompts, replies, records):
        return [1.0 if r["id"] != "p0" else float(len(r["reply_ids"]) + i)
                for i, r in enumerate(records)]

    stats = collect.collect_pairs(model, PROMPTS, _config(), out, reward=flat, progress=False)
    assert (stats.pairs, stats.dropped) == (1, 7)
    assert [r["id"] for r in pairs.read_records(pairs.dropped_path(out))] == [
        f"p{i}" for i in range(1, 8)]
    again = collect.collect_pairs(model, PROMPTS, _config(), out, reward=flat, progress=False)
    assert (again.skipped, again.pairs, again.dropped, again.replies) == (8, 0, 0, 0)


def test_resume_after_interruption_matches_uninterrupted_run(model, tmp_path, monkeypatch):
    full = tmp_path / "full.jsonl"
    collect.collect_pairs(model, PROMPTS, _config(), full, progress=False)

    resumed = tmp_path / "resumed.jsonl"
    written = []
    real_append = pairs.append_record

    def dying_append(fh, record):
        if len(written) == 4:  # mid-way through the second chunk
            fh.write(json.dumps(record).encode()[:25])  # a torn line, as a kill leaves it
            fh.flush()
            raise KeyboardInterrupt
        written.append(record["id"])
        real_append(fh, record)

    monkeypatch.setattr(pairs, "append_record", dying_append)
    with pytest.raises(KeyboardInterrupt):
        collect.collect_pairs(model, PROMPTS, _config(), resumed, progress=False)
    monkeypatch.setattr(pairs, "append_record", real_append)
    with pytest.warns(UserWarning, match="torn last line"):
        stats = collect.collect_pairs(model, PROMPTS, _config(), resumed, progress=False)
    assert stats.skipped == 4
    assert resumed.read_bytes() == full.read_bytes()
    dropped = pairs.dropped_path
    assert dropped(resumed).read_bytes() == dropped(full).read_bytes()


def test_bad_prompt_file_names_line(model, tmp_path):
    src = tmp_path / "prompts.jsonl"
    src.write_text('{"prompt": "hello"}\n{"prompt": 3}\n')
    with pytest.raises(DataError, match=r"prompts.jsonl:2: missing field 'prompt'"):
        collect.collect_pairs(model, src, _config(), tmp_path / "out.jsonl", progress=False)
    src.write_text('{"prompt": "The quick"}\n{"prompt": "Two plus"}\n')
    exact = _config(reward=RewardConfig(kind="exact_match"))
    with pytest.raises(DataError, match="id '0'.*'answer' field"):
        collect.collect_pairs(model, src, exact, tmp_path / "out.jsonl", progress=False)

    def by_sum(prompts, replies, records):
        return [float(sum(r["reply_ids"])) for r in records]

    out = tmp_path / "out.jsonl"
    stats = collect.collect_pairs(model, src, _config(), out, reward=by_sum, progress=False)
    assert (stats.prompts, stats.pairs) == (2, 2)
    assert [r["id"] for r in pairs.read_pairs(out)] == ["0", "1"]
