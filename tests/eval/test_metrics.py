"""Pure parts of toolkit.eval: MC metrics, file parsers, bad rows, answer extraction,
repetition metrics, config validation. No model involved."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolkit import methods
from toolkit.core import answers
from toolkit.core.errors import ConfigError, DataError
from toolkit.eval import factor, generation, truthfulqa
from toolkit.eval.config import EvalConfig
from toolkit.eval.data import BadRows
from toolkit.eval.repetition import distinct_n, repeated_ngram_rate, repetition_metrics

TFQA_HEADER = "Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"


def test_mc_metrics_hand_checked():
    # MC1: best (-1) > max false (-1.5). MC3: only -1 of three true answers beats -1.5.
    # MC2: (e^-1 + e^-2 + e^-5) / (e^-1 + e^-2 + e^-5 + e^-3 + e^-1.5) = 0.50995 / 0.78287.
    m = truthfulqa.mc_metrics([-1.0, -2.0, -5.0], [-3.0, -1.5], best_index=0)
    assert m["MC1"] == 1.0
    assert m["MC3"] == pytest.approx(1 / 3)
    assert m["MC2"] == pytest.approx(0.6513888, abs=1e-6)
    assert truthfulqa.mc_metrics([-1.0, -2.0, -5.0], [-3.0, -1.5], best_index=1)["MC1"] == 0.0


def test_mc_metrics_ties_and_underflow():
    tie = truthfulqa.mc_metrics([-1.0], [-1.0], best_index=0)
    assert (tie["MC1"], tie["MC3"], tie["MC2"]) == (0.0, 0.0, pytest.approx(0.5))
    # exp(-2000) underflows to 0 in float64; logsumexp keeps MC2 exact: 1 / (1 + e^-1000).
    assert truthfulqa.mc_metrics([-2000.0], [-3000.0], 0)["MC2"] == pytest.approx(1.0)
    assert truthfulqa.mc_metrics([-math.inf], [-math.inf], 0)["MC2"] == 0.0


@given(st.lists(st.floats(-50, 0), min_size=1, max_size=5),
       st.lists(st.floats(-50, 0), min_size=1, max_size=5))
def test_mc2_matches_direct_formula(true, false):
    direct = sum(map(math.exp, true)) / (sum(map(math.exp, true)) + sum(map(math.exp, false)))
    assert truthfulqa.mc_metrics(true, false, 0)["MC2"] == pytest.approx(direct, rel=1e-9)


def test_truthfulqa_csv_parsing_and_bad_rows(tmp_path):
    path = tmp_path / "tqa.csv"
    path.write_text(
        TFQA_HEADER
        + 'A,Misc,"Is the sky blue?",Yes,"Yes; It is blue.",No; It is green,src\n'
        + "A,Misc,Empty,,x,y,src\n"
        + 'A,Misc,"Multi\nline?",Sure,Sure,"",src\n'
        + "A,Misc,Q4,Best,Other,Wrong,src\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"tqa.csv:3: empty Best Answer"):
        truthfulqa.load(str(path), BadRows("error"))
    bad = BadRows("skip")
    items = truthfulqa.load(str(path), bad)
    assert len(items) == 1
    assert items[0]["true"] == ["Yes.", "It is blue."]
    assert items[0]["false"] == ["No.", "It is green."]
    assert items[0]["best"] == "Yes." and items[0]["line"] == 2
    assert [s.split(": ", 1)[0][-9:] for s in bad.skipped] == ["tqa.csv:3", "tqa.csv:4",
                                                               "tqa.csv:6"]
    assert "no Incorrect Answers" in bad.skipped[1] and "not one of" in bad.skipped[2]


def test_truthfulqa_missing_column_and_missing_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("Question,Best Answer\nq,a\n")
    with pytest.raises(DataError, match="missing column"):
        truthfulqa.load(str(path), BadRows("skip"))
    with pytest.raises(DataError, match="does not exist"):
        truthfulqa.load(str(tmp_path / "nope.csv"), BadRows("skip"))


def test_truthfulqa_pairs_use_template_and_leading_space():
    item = {"question": "Why?", "best": "A.", "true": ["A."], "false": ["B."]}
    assert truthfulqa.pairs(item, "Q: {question}\nA:") == [("Q: Why?\nA:", " A."),
                                                          ("Q: Why?\nA:", " B.")]
    res = truthfulqa.item_result(item, [-1.0, -2.0])
    assert res["scores_true"] == [-1.0] and res["MC1"] == 1.0


def test_factor_parsing_and_accuracy(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text(
        "full_prefix,completion,contradiction_0,contradiction_1,contradiction_2\n"
        "The cat,sat.,ran.,flew.,swam.\n"
        "The dog,barked.,,meowed.,sang.\n",
        encoding="utf-8",
    )
    bad = BadRows("skip")
    items = factor.load(str(path), bad)
    assert len(items) == 1 and items[0]["contradictions"] == ["ran.", "flew.", "swam."]
    assert "f.csv:3: empty contradiction_0" in bad.skipped[0]
    assert factor.pairs(items[0])[0] == ("The cat", " sat.")
    assert factor.item_result(items[0], [-1.0, -2.0, -1.0, -3.0])["accuracy"] == 1.0  # tie ok
    assert factor.item_result(items[0], [-1.0, -0.5, -1.0, -3.0])["accuracy"] == 0.0
    path.write_text("full_prefix,completion\np,c\n")
    with pytest.raises(DataError, match="contradiction_0"):
        factor.load(str(path), BadRows("skip"))


def test_answer_extraction():
    assert answers.gold_number("He has 3 + 4 = 7 apples.\n#### 1,007") == "1007"
    with pytest.raises(ValueError):
        answers.gold_number("no label")
    assert answers.extract_number("3 + 4 = 7. The answer is 7.") == "7"
    assert answers.extract_number("The answer is 12 and then 13") == "12"
    assert answers.extract_number("first 5 then 18.0") == "18"
    assert answers.extract_number("#### -2.5") == "-2.5"
    assert answers.extract_number("no digits") is None
    assert answers.truncate("So 4.\n\nQ: next") == "So 4."
    assert answers.extract_yes_no("Yes, because... So the answer is no.") is False
    assert answers.extract_yes_no("Nothing here") is None
    assert answers.gold_yes_no(True) is True and answers.gold_yes_no("No") is False
    with pytest.raises(ValueError):
        answers.gold_yes_no("maybe")


def test_generation_jsonl_bad_rows(tmp_path):
    path = tmp_path / "g.jsonl"
    rows = [{"question": "1+1?", "answer": "#### 2"}, {"question": "x", "answer": "none"}]
    path.write_text(json.dumps(rows[0]) + "\nnot json\n\n" + json.dumps(rows[1]) + "\n[1]\n")
    bad = BadRows("skip")
    items = generation.load("gsm8k", str(path), bad)
    assert items == [{"question": "1+1?", "gold": "2", "line": 1}]
    assert [s.split(": ")[0].rsplit(":", 1)[1] for s in bad.skipped] == ["2", "4", "5"]
    with pytest.raises(DataError, match=r"g.jsonl:2: invalid JSON"):
        generation.load("gsm8k", str(path), BadRows("error"))
    sqa = tmp_path / "s.jsonl"
    sqa.write_text('{"question": "Is ice cold?", "answer": true}\n{"question": "q"}\n')
    with pytest.raises(DataError, match=r"s.jsonl:2: missing 'answer'"):
        generation.load("strategyqa", str(sqa), BadRows("error"))


def test_generation_item_result():
    item = {"question": "q", "gold": "7"}
    res = generation.item_result("gsm8k", item, " 3+4=7. The answer is 7.\n\nQ: 8")
    assert res["predicted"] == "7" and res["accuracy"] == 1.0
    res = generation.item_result("strategyqa", {"gold": False}, " So the answer is yes.")
    assert res["accuracy"] == 0.0


def test_repetition_metrics_hand_checked():
    assert repeated_ngram_rate([1, 2, 1, 2, 1], 2) == pytest.approx(1 - 2 / 4)
    assert repeated_ngram_rate([1], 2) == 0.0
    # pooled bigrams: (1,2),(2,3) + (1,2),(2,1) -> 3 unique of 4
    assert distinct_n([[1, 2, 3], [1, 2, 1]], 2) == pytest.approx(0.75)
    m = repetition_metrics([[5, 5, 5, 5]])
    assert m["distinct_1"] == 0.25 and m["rep_1"] == 0.75 and m["rep_4"] == 0.0


def test_eval_config_validation():
    assert EvalConfig(task="factor").preset_name() == "factor"
    tq = EvalConfig()
    assert tq.preset_name() == "truthfulqa" and EvalConfig(preset="none").preset_name() is None
    assert EvalConfig(task="gsm8k").preset_name() is None
    assert EvalConfig(task="gsm8k", preset="factor").preset_name() == "factor"
    assert tq.prompt_template.startswith("Interpret each question literally")
    assert tq.prompt_template.count("\nA: ") == 6
    assert tq.active_modes == list(methods.scoring_modes())
    assert EvalConfig(task="gsm8k").active_modes == list(methods.generation_modes())
    for bad in (dict(task="mmlu"), dict(modes=["top_n_sigma"]), dict(on_bad_row="ignore"),
                dict(preset="halfway"),
                dict(batch_size=0), dict(template="no placeholder"), dict(modes=["sled", "sled"])):
        with pytest.raises(ConfigError):
            EvalConfig(**bad)


def test_eval_config_is_an_omegaconf_schema():
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(OmegaConf.structured(EvalConfig),
                             OmegaConf.from_dotlist(["task=factor", "modes=[greedy,sled]"]))
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, EvalConfig) and cfg.modes == ["greedy", "sled"]
