"""Shared-prefix scoring (eval.shared_prefix, the default) gives the scores of running every
whole sequence: on tiny Llama, Gemma 2 (logit soft-cap, sliding window 8 shorter than the
prompts) and Mixtral, for greedy and every method's scoring mode (SLED op_T=10, DoLa with and
without the relative-top filter, contrastive), with the old path right and left padded and
batches that split a question's answers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toolkit import methods
from toolkit.core.errors import DataError
from toolkit.eval import EvalConfig, run_eval
from toolkit.eval.scoring import batches, encode_pair, score_pairs
from toolkit.graft import AugmentedModel
from toolkit.methods.options import DecodingConfig, DolaOptions, SledOptions, apply_preset
from toolkit.testing import build_tiny_model, build_tokenizer

PROMPTS = ["Q: What is the capital of France, and why is it there?\nA:",
           "The cat sat on the very long", "Q: Why?\nA:"]
# One-token (" a": its only scored position is the prompt's last token) to 12-token answers.
ANSWERS = [" Paris.", " No, the sky is blue on a clear day.", " a", " the mat", " Because."]
PAIRS = [(p, a) for p in PROMPTS for a in ANSWERS]
MODES = list(methods.scoring_modes())
TFQA = apply_preset(DecodingConfig(sled=SledOptions(evolution_rate=2.5, evolution_scale=300)),
                    "truthfulqa")
FACTOR = apply_preset(DecodingConfig(sled=SledOptions(evolution_rate=2.0, evolution_scale=10),
                                     dola=DolaOptions(relative_top=0.5)), "factor")


def _model(family, dtype=torch.float32):
    return AugmentedModel.graft(build_tiny_model(family).to(dtype), tokenizer=build_tokenizer())


@pytest.fixture(scope="module", params=["llama", "gemma2", "mixtral"])
def am(request):
    return _model(request.param)


def test_the_pairs_cover_what_they_claim():
    tok = build_tokenizer()
    encoded = [encode_pair(tok, p, a) for p, a in PAIRS]
    lengths = {len(ids) - start for ids, start in encoded}
    assert min(lengths) == 1 and max(lengths) >= 10
    assert min(start for _, start in encoded) > 8  # longer than Gemma 2's sliding window
    assert MODES == ["greedy", "sled", "dola", "contrastive", "delta"]


@pytest.mark.parametrize("settings", [TFQA, FACTOR], ids=["truthfulqa", "factor"])
def test_shared_prefix_scores_equal_full_sequences(am, settings):
    before = [score_pairs(am, PAIRS, MODES, settings, batch_size=1, shared_prefix=False),
              score_pairs(am, PAIRS, MODES, settings, batch_size=4, padding_side="left",
                          shared_prefix=False)]
    for batch_size in (1, 3, 8):
        after = score_pairs(am, PAIRS, MODES, settings, batch_size=batch_size)
        for old in before:
            for mode in MODES:
                assert after[mode] == pytest.approx(old[mode], rel=1e-5, abs=1e-5), mode
    assert len(set(before[0]["sled"])) == len(PAIRS)


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
def test_in_float64_the_two_paths_agree_to_rounding(family):
    """The same arithmetic: float64 leaves only rounding (Gemma 3: sliding window 8, sdpa)."""
    am = _model(family, torch.float64)
    old = score_pairs(am, PAIRS, MODES, TFQA, batch_size=4, shared_prefix=False)
    new = score_pairs(am, PAIRS, MODES, TFQA, batch_size=3)
    for mode in MODES:
        assert new[mode] == pytest.approx(old[mode], rel=1e-12, abs=1e-9), mode


def test_each_prompt_runs_once():
    """Tokens through the model: every prompt once (but its last token, which runs with each
    answer batch), then each batch's answers right padded."""
    am, seen = _model("llama"), []
    hook = am.base.get_input_embeddings().register_forward_hook(
        lambda module, args, out: seen.append(args[0].numel()))
    try:
        score_pairs(am, PAIRS, ["greedy"], TFQA, batch_size=3)
    finally:
        hook.remove()
    tok = build_tokenizer()
    expected = 0
    for prompt in PROMPTS:
        encoded = sorted((encode_pair(tok, prompt, a) for a in ANSWERS), key=lambda e: len(e[0]))
        start = encoded[0][1]
        expected += start - 1
        for i in (0, 3):
            chunk = encoded[i : i + 3]
            expected += len(chunk) * max(len(ids) - start for ids, _ in chunk)
    assert sum(seen) == expected


def test_batches_group_by_prompt_and_cut_by_size():
    encoded = [([1, 2, 3, 4], 3), ([5, 2, 3, 4, 4], 3), ([1, 2, 3, 9, 9], 3), ([1, 2, 7], 2),
               ([1, 2, 8, 8], 3)]
    assert batches(encoded, 2, shared_prefix=True) == [
        ((1, 2), [0, 4]), ((1, 2), [2]), ((5, 2), [1]), ((1,), [3])]
    assert batches(encoded, 2, shared_prefix=False) == [(None, [3, 0]), (None, [4, 1]),
                                                        (None, [2])]


def test_eval_option_switches_the_path(tmp_path):
    data = tmp_path / "tqa.csv"
    data.write_text("Question,Best Answer,Correct Answers,Incorrect Answers\n"
                    'What color is the sky?,Blue,"Blue; The sky is blue","Green; Red"\n'
                    'Do cats bark?,"No, cats meow","No, cats meow; No","Yes, cats bark"\n')
    am, totals = _model("llama"), []
    for shared in (True, False):
        cfg = EvalConfig(data_path=str(data), output_dir=str(tmp_path / str(shared)),
                         progress=False, shared_prefix=shared, template="Q: {question}\nA:")
        totals.append(run_eval(am, cfg, TFQA)["items"])
    for new, old in zip(*totals, strict=True):
        for mode in MODES:
            assert new[mode]["scores_true"] == pytest.approx(old[mode]["scores_true"], rel=1e-5)
            assert new[mode]["scores_false"] == pytest.approx(old[mode]["scores_false"], rel=1e-5)


def test_a_one_token_prompt_has_no_cache_and_an_empty_one_is_refused():
    am = _model("llama")
    pairs = [("Q", a) for a in ANSWERS]
    assert batches([encode_pair(am.tokenizer, *p) for p in pairs], 8, True)[0][0] == ()
    old = score_pairs(am, pairs, MODES, TFQA, shared_prefix=False)
    new = score_pairs(am, pairs, MODES, TFQA)
    for mode in MODES:
        assert new[mode] == pytest.approx(old[mode], rel=1e-5, abs=1e-5)
    with pytest.raises(DataError, match="prompt '' has no tokens"):
        encode_pair(am.tokenizer, "", " a")


def test_the_truthfulqa_speed_benchmark_runs(tmp_path):
    """benchmarks/truthfulqa_speed.py on the tiny Llama: both paths timed, scores equal."""
    data = tmp_path / "tqa.csv"
    data.write_text("Question,Best Answer,Correct Answers,Incorrect Answers\n"
                    'What color is the sky?,Blue,"Blue; The sky is blue","Green; Red"\n'
                    'Do cats bark?,"No, cats meow","No, cats meow; No","Yes, cats bark"\n'
                    'Is ice cold?,Yes,"Yes; Ice is cold","No; Ice is hot"\n')
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "speed.json"
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "truthfulqa_speed.py"),
         str(root / "recipes" / "tiny.yaml"), "--data", str(data), "--questions", "2",
         "--block", "1", "--out", str(out), 'eval.template="Q: {question}\\nA:"',
         "runtime.threads=1", f"work_dir={tmp_path}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert (result["questions"], result["answers"]) == (2, 7)
    assert [r["mode"] for r in result["rows"]] == list(methods.scoring_modes())  # every one
    for row in result["rows"]:
        assert row["max_rel_diff"] < 1e-5
        assert row["speedup"] == pytest.approx(row["before_s"] / row["after_s"])
        assert row["after_qps"] == pytest.approx(2 / row["after_s"])
    assert "| sled |" in done.stdout
