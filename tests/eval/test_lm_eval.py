"""lm-evaluation-harness backend (`--model surgery`), offline end to end on a tiny model: a local
task YAML over a local JSON dataset. Its log-likelihoods are log-probabilities over the whole
vocabulary; with K = V (no token outside SLED's top-K) they equal our own `cli.py eval` (FACTOR
protocol: log_softmax of SLED's evolved logits, op_T 1, lower bound -2500) on the same items."""

from __future__ import annotations

import csv
import json
import math

import pytest
from _generation import prompt_batch

lm_eval = pytest.importorskip("lm_eval")

from toolkit.cli.main import main  # noqa: E402
from toolkit.eval import harness  # noqa: E402
from toolkit.graft.augmented import AugmentedModel  # noqa: E402
from toolkit.methods.options import DecodingConfig, GraftConfig, HeadConfig, with_overrides  # noqa: E402

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

    lm = harness.SurgeryLM(pretrained=str(ckpt), batch_size=4, device="cpu", **model_args)
    out = lm_eval.simple_evaluate(model=lm, tasks=[TASK], task_manager=TaskManager(
        include_path=str(tasks)), log_samples=True, verbosity="ERROR")
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    scores = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    return out["results"][TASK]["acc,none"], scores


# K = 300 is the tiny vocabulary: no token is outside the top-K, so the FACTOR protocol's lower
# bound replaces nothing and its log_softmax is lm-eval's log-probability over the vocabulary.
CASES = [
    ("greedy", {}, []),
    ("sled", dict(sled=True, sled_evolution_scale=300, sled_evolution_rate=2.5),
     ["decoding.sled.evolution_scale=300", "decoding.sled.evolution_rate=2.5"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("mode, args, overrides", CASES, ids=["greedy", "sled-K=V"])
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
    from toolkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="give pretrained="):
        harness.SurgeryLM(device="cpu")
    with pytest.raises(ConfigError, match="checkpoint=DIR is now pretrained=DIR"):
        harness.SurgeryLM(checkpoint=str(ckpt), device="cpu")
    with pytest.raises(ConfigError, match="unknown sled option.*sled_evolution_scale"):
        harness.SurgeryLM(pretrained=str(ckpt), sled=True, sled_scale=3, device="cpu")
    with pytest.raises(ConfigError, match="preset='factor'.*allowed: checkpoint"):
        harness.SurgeryLM(pretrained=str(ckpt), preset="factor", device="cpu")
    with pytest.raises(ConfigError, match="contrastive is enabled but has no log-probabilities"):
        harness.SurgeryLM(pretrained=str(ckpt), contrastive=True, device="cpu")


def test_saved_methods_apply_only_with_preset_checkpoint(tiny_llama_dir, tmp_path):
    am = AugmentedModel.graft(str(tiny_llama_dir), GraftConfig(head=HeadConfig(hidden_size=16)))
    am.decoding = with_overrides(am.decoding, sled=dict(evolution_scale=7), do_sample=True)
    ckpt = am.save_pretrained(tmp_path / "sled-ckpt")
    plain = harness.SurgeryLM(pretrained=str(ckpt), device="cpu")
    assert plain.decoding == DecodingConfig()
    assert plain.method_args() == ""
    saved = harness.SurgeryLM(pretrained=str(ckpt), preset="checkpoint", device="cpu")
    assert saved.decoding == am.decoding
    assert saved.method_args().startswith("sled=True,sled_evolution_rate=2.0,"
                                          "sled_evolution_scale=7,")
    off = harness.SurgeryLM(pretrained=str(ckpt), preset="checkpoint", sled=False, device="cpu")
    assert off.method_args() == ""
    dola = harness.SurgeryLM(pretrained=str(ckpt), preset="checkpoint", dola=True, device="cpu")
    assert dola.decoding.dola.enabled and not dola.decoding.sled.enabled  # replaces, no clash
    assert dola.method_args().startswith("dola=True,")


@pytest.mark.parametrize("args", [dict(sled=True, sled_evolution_scale=3), dict(dola=True)],
                         ids=["sled-K3", "dola"])
def test_each_token_gets_a_distribution_over_the_vocabulary(setup, args):
    """One context, every token of the vocabulary as its one-token continuation: lm-eval's
    log-likelihoods exponentiate to probabilities summing to 1, with no floor value."""
    _, ckpt, _ = setup
    lm = harness.SurgeryLM(pretrained=str(ckpt), device="cpu", batch_size=64, **args)
    context = lm.tok_encode("The capital of France is")
    requests = [(("ctx", f"t{i}"), context, [i]) for i in range(lm.am.base.config.vocab_size)]
    logliks = [ll for ll, _ in lm._loglikelihood_tokens(requests, disable_tqdm=True)]
    assert math.fsum(math.exp(v) for v in logliks) == pytest.approx(1.0, abs=1e-5)
    assert min(logliks) > -500.0, "a token got a floor value (-1000, -2500), not a log-probability"


def test_log_probs_by_hand():
    """Early logits equal to the final ones: SLED's latent is 0 (every cosine is 0), so one
    evolution step gives z - alpha * softmax(z) on every token; DoLa's contrast is 0, so its
    distribution is uniform."""
    import torch

    from toolkit import methods
    from toolkit.methods.dola import DolaOptions
    from toolkit.methods.sled import SledOptions

    z = torch.tensor([[2.0, 1.0, 0.0, -1.0, -3.0]])
    early = z[:, None].repeat(1, 2, 1)
    sled = methods.get("sled").log_probs(z, early, SledOptions(evolution_rate=2.0,
                                                                evolution_scale=2))
    expected = torch.log_softmax(z - 2.0 * torch.softmax(z, -1), -1)
    torch.testing.assert_close(sled, expected, rtol=0, atol=1e-6)
    dola = methods.get("dola").log_probs(z, early, DolaOptions())
    torch.testing.assert_close(dola, torch.full_like(z, -math.log(5)), rtol=0, atol=1e-6)


MC_ITEMS = [
    {"question": "What is the capital of France?", "best": "Paris.",
     "true": ["Paris.", "The capital of France is Paris."],
     "false": ["Rome.", "London is the capital of France.", "Berlin."]},
    {"question": "How many legs does a spider have?", "best": "A spider has eight legs.",
     "true": ["A spider has eight legs.", "Eight."],
     "false": ["Six.", "A spider has ten legs."]},
    {"question": "What do bees make?", "best": "Bees make honey.",
     "true": ["Bees make honey.", "Honey."], "false": ["Bees make milk.", "Bread."]},
]


def _truthfulqa(pretrained, model_args: str, tmp_path, monkeypatch,
               tasks=("truthfulqa_mc1_local", "truthfulqa_mc2_local")) -> dict:
    """lm-eval's CLI through our entry point on the local truthfulqa_mc1/mc2 tasks."""
    import sys

    from toolkit.eval.lm_eval_tasks import write_tasks

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    task_dir = write_tasks(MC_ITEMS, tmp_path / "tasks")
    out = tmp_path / "results"
    monkeypatch.setattr(sys, "argv", [
        "surgery-lm-eval", "run", "--model", "surgery", "--model_args",
        f"pretrained={pretrained}{model_args}", "--include_path", str(task_dir), "--tasks", *tasks,
        "--device", "cpu", "--batch_size", "8", "--output_path", str(out)])
    harness.main()
    [folder] = out.iterdir()
    [result] = folder.glob("results_*.json")
    return folder.name, json.loads(result.read_text())


def test_truthfulqa_mc2_is_finite_and_results_name_the_method(setup, tmp_path, monkeypatch):
    """K = 1: every other answer token lies outside SLED's top-K, where a floor value made
    lm-eval's MC2 0/0 (NaN). The results name the checkpoint and carry the method."""
    _, ckpt, _ = setup
    folder, result = _truthfulqa(ckpt, ",sled=True,sled_evolution_scale=1", tmp_path,
                                 monkeypatch)
    mc1 = result["results"]["truthfulqa_mc1_local"]["acc,none"]
    mc2 = result["results"]["truthfulqa_mc2_local"]["acc,none"]
    assert 0.0 <= mc1 <= 1.0 and 0.0 < mc2 < 1.0
    assert folder == str(ckpt).replace("/", "__")
    config = result["config"]
    args = config["model_args"].split(",")
    assert args[:3] == [f"pretrained={ckpt}", "sled=True", "sled_evolution_scale=1"]  # as given
    assert {"batch_size=8", "device=cpu", "sled_evolution_rate=2.0"} <= set(args)
    assert config["surgery"]["method"] == "sled"
    assert config["surgery"]["options"]["evolution_scale"] == 1


@pytest.mark.real
@pytest.mark.slow
def test_truthfulqa_mc2_is_finite_on_the_real_model(real_model_dir, tmp_path, monkeypatch):
    _, result = _truthfulqa(real_model_dir, ",sled=True", tmp_path, monkeypatch,
                            tasks=("truthfulqa_mc2_local",))
    mc2 = result["results"]["truthfulqa_mc2_local"]["acc,none"]
    assert 0.0 < mc2 < 1.0
    assert result["config"]["surgery"]["label"] == "SLED alpha=2 K=10"


def test_generation_goes_through_augmented_model(setup):
    import torch

    root, ckpt, _ = setup
    lm = harness.SurgeryLM(pretrained=str(ckpt), sled=True, sled_evolution_scale=5,
                           device="cpu")
    ids, mask = prompt_batch(lm.am.tokenizer)
    got = lm._model_generate(ids, max_length=ids.shape[1] + 8, stop=["never"],
                             attention_mask=mask, do_sample=False, temperature=0.0)
    expected = lm.am.generate(ids, mask, decoding=lm.decoding, max_new_tokens=8)
    assert torch.equal(got, expected)
    plain = lm.model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=8)
    assert not torch.equal(got, plain), "SLED changed nothing: the test tests nothing"
