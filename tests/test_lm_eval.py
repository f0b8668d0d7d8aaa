"""lm-evaluation-harness backend (`--model surgery`), offline end to end on a tiny model: a local
task YAML over a local JSON dataset; its numbers equal our own `cli.py eval` (FACTOR protocol:
log_softmax of SLED's evolved logits, op_T 1, lower bound -2500) on the same items."""

from __future__ import annotations

import csv
import json

import pytest
from _generation import prompt_batch

lm_eval = pytest.importorskip("lm_eval")

from toolkit.cli.main import main  # noqa: E402
from toolkit.eval import harness  # noqa: E402
from toolkit.graft.augmented import AugmentedModel  # noqa: E402
from toolkit.options import GraftConfig, HeadConfig  # noqa: E402

ITEMS = [
    ("The capital of France is", "Paris.", ["Rome.", "a large river."]),
    ("Water boils at a temperature of", "100 degrees.", ["10 degrees.", "frozen snow."]),
    ("The quick brown fox jumps over", "the lazy dog.", ["the moon.", "a quiet cat."]),
    ("Two plus two equals", "four.", ["five.", "seven and a half."]),
    ("The sun rises in the", "east.", ["west.", "north at noon."]),
    ("A week has", "seven days.", ["nine days.", "three hours."]),
]
TASK = "surgery_factor_test"
TASK_YAML = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prefix}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: 0
target_delimiter: " "
metric_list:
  - metric: acc
"""


@pytest.fixture(scope="module")
def setup(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval")
    am = AugmentedModel.graft(str(tiny_llama_dir), GraftConfig(head=HeadConfig(hidden_size=16)))
    ckpt = am.save_pretrained(root / "ckpt")
    with open(root / "factor.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["full_prefix", "completion", "contradiction_0", "contradiction_1"])
        writer.writerows([[p, c, *wrong] for p, c, wrong in ITEMS])
    data = root / "items.json"
    data.write_text(json.dumps([{"prefix": p, "choices": [c, *wrong]} for p, c, wrong in ITEMS]))
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / f"{TASK}.yaml").write_text(TASK_YAML.format(task=TASK, data=data))
    return root, ckpt, tasks


def _ours(root, ckpt, mode, capsys, overrides):
    recipe = root / "recipe.yaml"
    work = root / f"work-{mode}-{len(overrides)}"
    recipe.write_text(f"run_name: t\noutput_dir: {root}/out\nwork_dir: {work}\n"
                      f"model:\n  path: {ckpt}\n")
    code = main(["eval", str(recipe), "eval.task=factor", f"eval.data_path={root}/factor.csv",
                 f"eval.modes=[{mode}]", "eval.progress=false", "eval.batch_size=3", *overrides])
    capsys.readouterr()
    assert code == 0
    result = json.loads((work / "eval" / "results.json").read_text())
    scores = [[r[mode]["score_true"], *r[mode]["scores_false"]] for r in result["items"]]
    return result["totals"][mode]["accuracy"], scores


def _theirs(ckpt, tasks, **model_args):
    from lm_eval.tasks import TaskManager

    lm = harness.SurgeryLM(checkpoint=str(ckpt), batch_size=4, device="cpu", **model_args)
    out = lm_eval.simple_evaluate(model=lm, tasks=[TASK], task_manager=TaskManager(
        include_path=str(tasks)), log_samples=True, verbosity="ERROR")
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    scores = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    return out["results"][TASK]["acc,none"], scores


CASES = [
    ("greedy", {}, []),
    ("sled", dict(sled=True), []),
    ("sled", dict(sled=True, sled_evolution_scale=100, sled_evolution_rate=2.5),
     ["decoding.sled.evolution_scale=100", "decoding.sled.evolution_rate=2.5"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("mode, args, overrides", CASES, ids=["greedy", "sled", "sled-K100"])
def test_lm_eval_equals_our_factor_scorer(setup, capsys, monkeypatch, mode, args, overrides):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, ckpt, tasks = setup
    acc_ours, ours = _ours(root, ckpt, mode, capsys, overrides)
    acc_theirs, theirs = _theirs(ckpt, tasks, **args)
    assert len(theirs) == len(ours) == len(ITEMS)
    for a, b in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-4)
    assert acc_theirs == pytest.approx(acc_ours)
    pairs = [(x, y) for a, b in zip(ours, theirs, strict=True)
             for x, y in zip(a, b, strict=True)]
    diff = max(abs(x - y) for x, y in pairs)
    rel = max(abs(x - y) / max(abs(x), 1e-12) for x, y in pairs)
    with capsys.disabled():
        print(f"\n[lm-eval vs cli.py eval] {mode} {args}: accuracy ours {acc_ours:.4f} "
              f"lm-eval {acc_theirs:.4f}; max |log-likelihood diff| {diff:.2e} (relative "
              f"{rel:.1e}) over {len(pairs)} choices")


def test_model_args_are_checked(setup):
    root, ckpt, _ = setup
    from toolkit.errors import ConfigError

    with pytest.raises(ConfigError, match="exactly one of checkpoint"):
        harness.SurgeryLM(device="cpu")
    with pytest.raises(ConfigError, match="unknown sled option.*sled_evolution_scale"):
        harness.SurgeryLM(checkpoint=str(ckpt), sled=True, sled_scale=3, device="cpu")


def test_generation_goes_through_augmented_model(setup):
    import torch

    root, ckpt, _ = setup
    lm = harness.SurgeryLM(checkpoint=str(ckpt), sled=True, sled_evolution_scale=5,
                           device="cpu")
    ids, mask = prompt_batch(lm.am.tokenizer)
    got = lm._model_generate(ids, max_length=ids.shape[1] + 8, stop=["never"],
                             attention_mask=mask, do_sample=False, temperature=0.0)
    expected = lm.am.generate(ids, mask, decoding=lm.decoding, max_new_tokens=8)
    assert torch.equal(got, expected)
    plain = lm.model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=8)
    assert not torch.equal(got, plain), "SLED changed nothing: the test tests nothing"
