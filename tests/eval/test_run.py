"""run_eval end to end on the tiny Llama with small synthetic files in each format."""

import importlib.util
import json

import pytest

from toolkit import methods
from toolkit.core.errors import ConfigError, DataError
from toolkit.eval import EvalConfig, run_eval
from toolkit.eval.truthfulqa import mc_metrics
from toolkit.graft import AugmentedModel
from toolkit.methods.options import DecodingConfig, SledOptions

TFQA = (
    "Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"
    'Adversarial,Misc,What color is the sky?,The sky is blue,"The sky is blue; Blue",'
    '"The sky is green; Red",s\n'
    "Adversarial,Misc,Broken row,,,,s\n"
    'Adversarial,Misc,Do cats bark?,"No, cats meow","No, cats meow; They do not",'
    '"Yes, cats bark",s\n'
)
FACTOR = (
    "full_prefix,completion,contradiction_0,contradiction_1\n"
    "The cat sat on the,mat.,moon.,car.\n"
    "Water boils at,100 degrees.,10 degrees.,1 degree.\n"
)


@pytest.fixture(scope="module")
def am(tiny_llama_dir):
    return AugmentedModel.graft(str(tiny_llama_dir))


def _cfg(tmp_path, task, name, text, **kw):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return EvalConfig(task=task, data_path=str(path), output_dir=str(tmp_path / "out"),
                      progress=False, **kw)


def test_truthfulqa_run_writes_consistent_results(am, tmp_path):
    cfg = _cfg(tmp_path, "truthfulqa", "tqa.csv", TFQA, on_bad_row="skip", batch_size=3,
               template="Q: {question}\nA:")
    result = run_eval(am, cfg, DecodingConfig(sled=SledOptions(evolution_scale=50)))
    assert result["num_items"] == 2 and result["modes"] == list(methods.scoring_modes())
    assert result["modes"][:3] == ["greedy", "sled", "dola"]
    assert result["skipped_rows"][0].endswith("tqa.csv:3: empty Best Answer")
    sled = result["settings"]["sled"]
    assert (sled["op_T"], sled["evolution_lower_bound"], sled["evolution_scale"]) == (10, -100.0, 50)
    assert result["settings"]["dola"]["relative_top"] == 0.0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    for mode in result["modes"]:
        per_item = [item[mode] for item in saved["items"]]
        for res in per_item:
            assert len(res["scores_true"]) == 2
            again = mc_metrics(res["scores_true"], res["scores_false"], 0)
            assert {k: res[k] for k in again} == pytest.approx(again)
        for metric in ("MC1", "MC2", "MC3"):
            mean = sum(r[metric] for r in per_item) / 2
            assert saved["totals"][mode][metric] == pytest.approx(mean)
            assert 0.0 <= mean <= 1.0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| MC2 |" in report and f"| metric | {' | '.join(result['modes'])} |" in report
    if importlib.util.find_spec("matplotlib") is None:
        assert "No PNG chart: matplotlib is not installed" in report
    else:
        assert (tmp_path / "out" / "report.png").stat().st_size > 0


def test_truthfulqa_bad_row_is_rejected_by_default(am, tmp_path):
    with pytest.raises(DataError, match=r"tqa.csv:3: empty Best Answer"):
        run_eval(am, _cfg(tmp_path, "truthfulqa", "tqa.csv", TFQA))


def test_default_truthfulqa_template_runs(am, tmp_path):
    rows = TFQA.splitlines()
    cfg = _cfg(tmp_path, "truthfulqa", "one.csv", "\n".join(rows[:2]) + "\n", modes=["greedy"])
    result = run_eval(am, cfg)
    assert result["totals"]["greedy"]["MC2"] > 0.0


def test_factor_run(am, tmp_path):
    result = run_eval(am, _cfg(tmp_path, "factor", "f.csv", FACTOR))
    sled = result["settings"]["sled"]
    assert (sled["evolution_lower_bound"], sled["op_T"], sled["score_log_softmax"]) == (
        -2500.0, 1, True)
    for mode in ("greedy", "dola", "sled"):
        accs = [item[mode]["accuracy"] for item in result["items"]]
        assert result["totals"][mode]["accuracy"] == pytest.approx(sum(accs) / 2)
        for item in result["items"]:
            res = item[mode]
            assert res["accuracy"] == float(all(res["score_true"] >= s
                                                for s in res["scores_false"]))


@pytest.mark.parametrize("task,line", [
    ("gsm8k", {"question": "What is 2 plus 3?", "answer": "2 + 3 = 5\n#### 5"}),
    ("strategyqa", {"question": "Is water wet?", "answer": True}),
    ("repetition", {"prompt": "Once upon a time"}),
])
def test_generation_tasks(am, tmp_path, task, line):
    text = json.dumps(line) + "\n" + json.dumps(line) + "\n"
    cfg = _cfg(tmp_path, task, "d.jsonl", text, modes=["greedy", "composed"], batch_size=2)
    result = run_eval(am, cfg, DecodingConfig(max_new_tokens=6))
    greedy = [item["greedy"]["reply"] for item in result["items"]]
    assert greedy[0] == greedy[1]  # same prompt, greedy: same reply, batched or not
    for mode in ("greedy", "composed"):
        totals = result["totals"][mode]
        assert 0.0 <= totals["distinct_1"] <= 1.0 and 0.0 <= totals["rep_2"] <= 1.0
        if task != "repetition":
            assert totals["accuracy"] in (0.0, 0.5, 1.0)
    assert result["settings"]["composed"]["sled"]["enabled"] is True
    assert result["settings"]["composed"]["top_n_sigma"]["enabled"] is True


@pytest.mark.parametrize("task,name,text", [("factor", "f.csv", FACTOR),
                                            ("repetition", "r.jsonl", '{"prompt": "Hi"}\n')])
def test_evolution_scale_above_the_vocabulary_is_rejected_like_generate(am, tmp_path, task,
                                                                        name, text):
    too_big = DecodingConfig(sled=SledOptions(evolution_scale=am.vocab_size + 1))
    with pytest.raises(ConfigError, match=r"sled.evolution_scale=301 is larger than the vocab"):
        run_eval(am, _cfg(tmp_path, task, name, text), too_big)
    assert not (tmp_path / "out").exists()


def test_run_eval_needs_an_augmented_model(tmp_path):
    with pytest.raises(ConfigError, match="AugmentedModel"):
        run_eval(object(), EvalConfig(task="factor", data_path=str(tmp_path)))
