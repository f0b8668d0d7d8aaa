"""run_bench on the tiny random shape: every mode timed, ratios consistent, JSON written,
interleaving covers every mode in every repeat."""

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from toolkit import methods
from toolkit.bench import BenchConfig, run_bench
from toolkit.core.errors import ConfigError
from toolkit.graft import AugmentedModel
from toolkit.testing import random_model
from toolkit.testing.shapes import shape_config

# The bench's modes: its baselines, SLED once per K, then every other registered mode.
MODES = ["greedy", "floor", "sample", "sled_k5", "sled_k20",
         *(m for m in methods.generation_modes() if m not in ("greedy", "sled"))]


def test_shapes():
    cfg = shape_config("llama-d512")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == (512, 16, 32000)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size) == (8, 8,
                                                                                          1376)
    assert shape_config("llama-3-8b").vocab_size == 128256
    a, b = random_model("tiny", seed=3), random_model("tiny", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.lm_head.weight, random_model("tiny", seed=4).lm_head.weight)
    assert random_model("tiny", dtype="bfloat16").dtype == torch.bfloat16
    assert random_model("tiny", dtype="auto").dtype == torch.float32
    with pytest.raises(ConfigError, match="llama-d512"):
        random_model("llama-13b")


def test_bench_config_validation():
    assert BenchConfig(sled_ks=[5, 20]).mode_names() == MODES
    assert BenchConfig(modes=["dola"]).mode_names() == ["greedy", "floor", "dola"]
    for bad in (dict(new_tokens=1), dict(batch_sizes=[]), dict(modes=["beam"]), dict(repeats=0)):
        with pytest.raises(ConfigError):
            BenchConfig(**bad)


def test_run_bench_tiny(tmp_path):
    am = AugmentedModel.graft(random_model("tiny", seed=0))
    cfg = BenchConfig(batch_sizes=[1, 2], prompt_len=4, new_tokens=3, repeats=2, warmup=1,
                      sled_ks=[5, 20], output_dir=str(tmp_path / "bench"), progress=False)
    result = run_bench(am, cfg)
    rows = {(r["batch"], r["mode"]): r for r in result["rows"]}
    assert set(rows) == {(b, m) for b in (1, 2) for m in MODES}
    for (b, _), row in rows.items():
        for key in ("prefill_ms", "decode_ms_per_token", "tokens_per_s"):
            assert math.isfinite(row[key]) and row[key] > 0
        assert row["new_tokens"] == 3 and row["peak_mb"] >= 0
        greedy, floor = rows[(b, "greedy")], rows[(b, "floor")]
        assert row["ratio_to_greedy"] == pytest.approx(
            row["decode_ms_per_token"] / greedy["decode_ms_per_token"])
        assert row["ratio_to_floor"] == pytest.approx(
            row["decode_ms_per_token"] / floor["decode_ms_per_token"])
        assert row["decode_cpu_ms_per_token"] > 0 and row["cpu_ratio_to_floor"] == pytest.approx(
            row["decode_cpu_ms_per_token"] / floor["decode_cpu_ms_per_token"])
        assert row["tokens_per_s"] == pytest.approx(b * 1000 / row["decode_ms_per_token"])
        assert row["ratio_to_sample"] == pytest.approx(
            row["decode_ms_per_token"] / rows[(b, "sample")]["decode_ms_per_token"])
        assert row["peak_over_greedy_mb"] == pytest.approx(row["peak_mb"] - greedy["peak_mb"])
    assert rows[(1, "greedy")]["ratio_to_greedy"] == 1.0
    for (_, mode), row in rows.items():  # the step math against one log_softmax, same run
        if mode in ("greedy", "floor", "sample"):
            assert "math_ms" not in row
            continue
        assert row["math_ms"] > 0 and row["log_softmax_ms"] > 0
        assert row["math_vs_log_softmax"] == pytest.approx(row["math_ms"] / row["log_softmax_ms"])
    assert all(s["load_1m"] >= 0 for s in result["samples"])
    assert len(result["math_samples"]) == 2 * 2 * (len(MODES) - 3)
    schedule = result["schedule"]
    for r in (-1, 0, 1):
        for b in (1, 2):
            order = [s["mode"] for s in schedule if s["repeat"] == r and s["batch"] == b]
            assert sorted(order) == sorted(MODES)
    firsts = {s["mode"] for s in schedule if s["batch"] == 1 and
              [x for x in schedule if x["repeat"] == s["repeat"] and x["batch"] == 1][0] is s}
    assert len(firsts) == 3  # the order rotates from repeat to repeat
    saved = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert saved["rows"] == result["rows"] and len(saved["samples"]) == 2 * 2 * len(MODES)
    table = (tmp_path / "bench" / "bench.md").read_text()
    assert "| sled_k20 | 2 |" in table and "vs floor" in table and "vs sample" in table
    assert "math / log_softmax" in table and "load average" in table and "CPU time vs floor" in table
    assert result["decoding_math"].startswith("SLED/DoLa CPU math: ") and \
        result["decoding_math"] in table
    if importlib.util.find_spec("matplotlib") is None:
        assert "no plot: matplotlib is not installed" in table
    else:
        assert (tmp_path / "bench" / "bench.png").stat().st_size > 0


def test_eval_throughput_mode(tmp_path):
    """eval_questions > 0: greedy, SLED and DoLa scoring timed side by side (questions/s),
    each with the prompt rerun per answer and shared through a KV cache."""
    am = AugmentedModel.graft(random_model("tiny", seed=0))
    cfg = BenchConfig(batch_sizes=[1], prompt_len=4, new_tokens=2, repeats=1, warmup=0,
                      modes=["greedy"], eval_questions=3, eval_prompt_len=5, eval_answers=4,
                      eval_answer_len=3, eval_batch_size=5, output_dir=str(tmp_path / "b"),
                      progress=False, plot=False)
    result = run_bench(am, cfg)
    rows = [(r["mode"], r["shared_prefix"]) for r in result["eval_rows"]]
    assert rows == [("greedy", False), ("greedy", True)]  # bench.modes limits them too
    cfg = dataclasses.replace(cfg, modes=[])
    rows = {(r["mode"], r["shared_prefix"]): r for r in run_bench(am, cfg)["eval_rows"]}
    assert set(rows) == {(m, s) for m in methods.scoring_modes() for s in (False, True)}
    assert {"greedy", "sled", "dola"} <= set(methods.scoring_modes())
    for (mode, _), row in rows.items():
        assert row["questions_per_s"] == pytest.approx(3 / row["seconds"])
        assert row["answers_per_s"] == pytest.approx(12 / row["seconds"])
        assert row["speedup"] == pytest.approx(rows[mode, False]["seconds"] / row["seconds"])
    assert rows["greedy", True]["ratio_to_greedy"] == rows["greedy", False]["ratio_to_greedy"] == 1.0
    table = (tmp_path / "b" / "bench.md").read_text()
    assert "| sled | rerun per answer |" in table and "| sled | shared (KV cache) |" in table
    with pytest.raises(ConfigError, match="bench.eval_answers"):
        BenchConfig(eval_answers=0)


def test_allocators_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="bench.allocators.*reuse"):
        BenchConfig(allocators=["jemalloc"])
    with pytest.raises(ConfigError, match="names an allocator twice"):
        BenchConfig(allocators=["system", "system"])
    am = AugmentedModel.graft(random_model("tiny", seed=0))
    cfg = BenchConfig(allocators=["reuse", "system"], output_dir=str(tmp_path / "b"))
    with pytest.raises(ConfigError, match="in a second process; run it through cli.py bench"):
        run_bench(am, cfg)


@pytest.mark.slow
def test_allocators_side_by_side(tmp_path, capsys):
    """bench.allocators=[reuse,system]: the CLI's process runs reuse, a second process (never
    touching glibc) runs system, round by round; rows of one mode sit side by side."""
    from toolkit.cli.main import main

    out = tmp_path / "bench"
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "bench_llama_d512.yaml"
    code = main(["bench", str(recipe), "model.random_shape=tiny",
                 "runtime.allocator=reuse", "bench.batch_sizes=[1]", "bench.new_tokens=3",
                 "bench.repeats=2", "bench.warmup=0", "bench.modes=[greedy,sled]",
                 "bench.sled_ks=[5]", "bench.allocators=[reuse,system]", "bench.progress=false",
                 "bench.plot=false", f"bench.output_dir={out}"])
    capsys.readouterr()
    assert code == 0
    result = json.loads((out / "bench.json").read_text())
    assert [(r["mode"], r["allocator"]) for r in result["rows"]] == [
        (m, a) for m in ("greedy", "floor", "sled_k5") for a in ("reuse", "system")]
    decode = {(r["mode"], r["allocator"]): r["decode_ms_per_token"] for r in result["rows"]}
    for r in result["rows"]:
        assert r["ratio_to_allocator"] == pytest.approx(decode[r["mode"], r["allocator"]]
                                                        / decode[r["mode"], "reuse"])
        assert r["ratio_to_greedy"] == pytest.approx(decode[r["mode"], r["allocator"]]
                                                     / decode["greedy", r["allocator"]])
    assert sum(s["allocator"] == "system" for s in result["samples"]) == 3 * 2
    assert result["allocator"].startswith("allocators side by side: reuse (this process: ")
    assert result["allocator"].endswith("system (a second process)")
    assert "| sled_k5 | system | 1 |" in (out / "bench.md").read_text()
