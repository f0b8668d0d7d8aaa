"""Rewards, pair selection and the append-safe pairs JSONL."""

import json
import random
import sys

import pytest

from toolkit.core.answers import extract_number
from toolkit.core.errors import ConfigError, DataError
from toolkit.lpo import pairs, rewards
from toolkit.lpo.config import CollectConfig, RewardConfig, TrainConfig, TrainerConfig


@pytest.mark.parametrize(
    "text, answer",
    [
        ("so she pays 3 + 4 = 7 dollars\n#### 7", "7"),
        ("#### 1,234", "1234"),
        ("the total is 12.0 apples, then 5 more... answer 17.", "17"),
        ("#### -3 and later 99", "-3"),
        ("no number here", None),
    ],
)
def test_one_answer_extractor(text, answer):
    assert extract_number(text) == answer


def test_reward_and_eval_accuracy_score_a_reply_alike():
    from toolkit.eval.generation import item_result

    score = rewards.build_reward(RewardConfig(kind="exact_match"))
    for reply in (" 3+4=7. The answer is 7 and then 8.", " It is 7.\n\nQ: what is 9?", " 8"):
        reward = score(["p"], [reply], [{"id": "a", "answer": "#### 7"}])[0]
        assert reward == item_result("gsm8k", {"gold": "7"}, reply)["accuracy"]


def test_exact_match_reward():
    score = rewards.build_reward(RewardConfig(kind="exact_match"))
    records = [{"id": "a", "answer": "Natalia sold 72 clips.\n#### 72"}] * 2
    assert score(["p", "p"], ["... #### 72", "it is 71"], records) == [1.0, 0.0]
    with pytest.raises(DataError, match="'answer'"):
        score(["p"], ["1"], [{"id": "b"}])


def test_repetition_reward_counts_repeated_ngrams():
    assert rewards.repeated_ngrams([1, 2, 1, 2, 1, 2], n=2) == 3
    assert rewards.repeated_ngrams([1, 2, 3, 4], n=2) == 0
    score = rewards.build_reward(RewardConfig(kind="repetition", ngram=2))
    recs = [{"reply_ids": [5, 5, 5, 5]}, {"reply_ids": [1, 2, 3, 4]}]
    assert score(["", ""], ["", ""], recs) == [-2.0, 0.0]


def test_function_reward(tmp_path, monkeypatch):
    (tmp_path / "my_reward_mod.py").write_text(
        "def score(prompt, reply, record):\n    return len(reply) + record['bonus']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    score = rewards.build_reward(RewardConfig(kind="function", function="my_reward_mod:score"))
    assert score(["p"], ["abc"], [{"bonus": 2}]) == [5.0]
    with pytest.raises(ConfigError, match="no function"):
        rewards.build_reward(RewardConfig(kind="function", function="my_reward_mod:nope"))
    sys.modules.pop("my_reward_mod", None)


def test_reward_model_scores_first_logit(tiny_llama_dir, tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    cfg = LlamaConfig.from_pretrained(tiny_llama_dir, num_labels=1)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(cfg)
    model.save_pretrained(tmp_path / "rm")
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(tmp_path / "rm")
    score = rewards.build_reward(RewardConfig(kind="reward_model", model_path=str(tmp_path / "rm")))
    got = score(["hello ", "hi "], ["world", "there you go"], [{}, {}])
    tok = AutoTokenizer.from_pretrained(tmp_path / "rm")
    with torch.no_grad():
        ref = model.eval()(**tok(["hi there you go"], return_tensors="pt")).logits[0, 0].item()
    assert got[1] == pytest.approx(ref, abs=1e-4)
    assert got[0] != got[1]


def test_select_pair_ties_and_drops():
    assert pairs.select_pair([1.0, 1.0, 1.0], random.Random(0)) is None
    picks = {pairs.select_pair([1.0, 0.0, 1.0, 0.0], random.Random(s)) for s in range(30)}
    assert picks == {(0, 1), (0, 3), (2, 1), (2, 3)}
    assert pairs.select_pair([0.2, 0.9, -1.0], random.Random(0)) == (1, 2)


def test_load_prompts_reports_bad_lines(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text('{"prompt": "a"}\n\n{"id": "x", "prompt_ids": [1, 2]}\n')
    assert [r["id"] for r in pairs.load_prompts(good)] == ["0", "x"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": "b"\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        pairs.load_prompts(bad)
    bad.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=r":2: missing field 'prompt'"):
        pairs.load_prompts(bad)
    bad.write_text('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n')
    with pytest.raises(DataError, match="repeats"):
        pairs.load_prompts(bad)


def test_append_and_torn_tail(tmp_path):
    path = tmp_path / "pairs.jsonl"
    with open(path, "ab") as fh:
        pairs.append_record(fh, {"id": "a", "v": 1})
        pairs.append_record(fh, {"id": "b", "v": 2})
    with open(path, "ab") as fh:
        fh.write(b'{"id": "c", "v"')  # interrupted mid-line
    with pytest.warns(UserWarning, match="torn last line"):
        assert [r["id"] for r in pairs.read_records(path)] == ["a", "b"]
    with pytest.warns(UserWarning, match="torn last line"):
        pairs.repair_tail(path)
    with open(path, "ab") as fh:
        pairs.append_record(fh, {"id": "c", "v": 3})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["v"] for line in lines] == [1, 2, 3]
    with open(pairs.dropped_path(path), "ab") as fh:
        pairs.append_record(fh, {"id": "d"})
    assert pairs.done_ids(path) == {"a", "b", "c", "d"}


def test_read_pairs_checks_fields(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"id": "a", "prompt_ids": [1]}\n')
    with pytest.raises(DataError, match=":1: missing field"):
        pairs.read_pairs(path)
    path.write_text("")
    with pytest.raises(DataError, match="no preference pairs"):
        pairs.read_pairs(path)


@pytest.mark.parametrize(
    "build, key",
    [
        (lambda: RewardConfig(kind="bleu"), "reward.kind"),
        (lambda: RewardConfig(kind="function", function="nocolon"), "reward.function"),
        (lambda: RewardConfig(kind="reward_model"), "reward.model_path"),
        (lambda: CollectConfig(num_replies=1), "collect.num_replies"),
        (lambda: TrainConfig(loss="dpo"), "train.loss"),
        (lambda: TrainConfig(beta=0.0), "train.beta"),
        (lambda: TrainerConfig(strategy="deepspeed"), "trainer.strategy"),
        (lambda: TrainerConfig(devices=0), "trainer.devices"),
        (lambda: TrainerConfig(devices=[]), "trainer.devices"),
        (lambda: TrainerConfig(max_steps=-1, max_epochs=None), "trainer.max_steps"),
        (lambda: TrainerConfig(precision="8-bit"), "trainer.precision"),
    ],
)
def test_config_errors_name_the_key(build, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build()


def test_configs_work_with_omegaconf():
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(
        OmegaConf.structured(CollectConfig),
        OmegaConf.from_dotlist(["num_replies=4", "reward.kind=repetition"]),
    )
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, CollectConfig) and cfg.reward.kind == "repetition"
    trainer = OmegaConf.to_object(OmegaConf.structured(TrainerConfig(strategy="ddp", devices=2)))
    assert trainer.devices == 2 and trainer.strategy == "ddp"
    listed = OmegaConf.merge(OmegaConf.structured(TrainerConfig), {"devices": [0, 1]})
    assert list(OmegaConf.to_object(listed).devices) == [0, 1]
