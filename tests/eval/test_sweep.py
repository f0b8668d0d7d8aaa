"""The temperature sweep: each cell runs its sampler at its temperature with the shared seeds,
accuracy is exact match of the final number; files and CLI output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from toolkit import methods
from toolkit.cli.main import main
from toolkit.core.errors import ConfigError
from toolkit.eval.config import EvalConfig
from toolkit.eval.sweep import run_sweep
from toolkit.methods.options import DecodingConfig
from toolkit.testing import build_tokenizer

ROOT = Path(__file__).resolve().parents[2]


class FakeModel:
    """Answers every question right exactly when the decoding's temperature is <= 1 (or greedy),
    and records what each generate call asked for."""

    def __init__(self):
        self.tokenizer = build_tokenizer()
        self.calls = []

    def prompt_convention(self, chat_template):
        return "raw"

    def generate(self, ids, mask, decoding, **hf):
        self.calls.append((decoding, hf))
        good = not decoding.do_sample or decoding.temperature <= 1.0
        rows = []
        for i in range(ids.shape[0]):
            answer = self.answers[i] if good else "0"
            rows.append(self.tokenizer(f" {answer}")["input_ids"])
        width = max(map(len, rows))
        new = torch.tensor([r + [self.tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        return torch.cat([ids, new], dim=1)


def test_cells_use_their_sampler_temperature_and_seeds(tmp_path):
    model = FakeModel()
    config = EvalConfig(task="arithmetic", temperatures=[0.7, 1.5], sweep_samples=2, limit=3,
                        output_dir=str(tmp_path), batch_size=8, progress=False)
    from toolkit.eval.sweep import questions

    model.answers = [q["answer"] for q in questions(model, config)]
    result = run_sweep(model, config, DecodingConfig(seed=5, max_new_tokens=4))
    for row in result["accuracy"].values():
        assert row == {"0.7": 1.0, "1.5": 0.0}
    assert result["greedy_accuracy"] == 1.0 and result["seeds"] == [5, 6]
    sampled = [(d, hf) for d, hf in model.calls if d.do_sample]
    assert len(sampled) == 6 * 2 * 2
    assert {(d.temperature, d.seed) for d, _ in sampled} == {(0.7, 5), (0.7, 6), (1.5, 5), (1.5, 6)}
    assert sum(d.top_p == 0.9 for d, _ in sampled) == 4
    assert sum(hf.get("min_p") == 0.1 for _, hf in sampled) == 4
    assert sum(d.top_n_sigma.enabled and d.top_n_sigma.n == 1.0 for d, _ in sampled) == 4
    assert sum(d.p_less.enabled for d, _ in sampled) == 4
    edt = [d for d, _ in sampled if d.edt.enabled]
    assert len(edt) == 4 and all(d.edt.t0 == d.temperature and d.edt.theta == 1.0 for d in edt)
    assert all(len(methods.active(d)) <= 1 for d, _ in sampled)
    assert not any(d.sled.enabled or d.adaptive_temperature.enabled for d, _ in sampled)
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["accuracy"] == result["accuracy"]
    assert "| top-n-sigma n=1 | 1.000 | 0.000 |" in (tmp_path / "sweep.md").read_text()
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_a_base_model_gets_solved_train_questions_before_each_held_out_one():
    from toolkit.eval.sweep import SHOTS, questions

    model = FakeModel()
    config = EvalConfig(task="arithmetic", temperatures=[1.0], limit=32)
    items = questions(model, config)
    shots = items[0]["prompt"].split("\n\n")[:-1]
    assert len(shots) == SHOTS and all(it["prompt"].startswith("\n\n".join(shots)) for it in items)
    held_out = {it["question"] for it in items}
    for shot in shots:  # "Q: What is a + b? ...\nA: a+b", none of them a held-out question
        question, answer = shot.removeprefix("Q: ").split("\nA: ")
        a, b = map(int, question.removeprefix("What is ").split("?")[0].split(" + "))
        assert int(answer) == a + b and question not in held_out
    assert all(it["prompt"].endswith(f"Q: {it['question']}\nA:") for it in items)
    model.prompt_convention = lambda chat_template: "chat"
    assert all(not it["prompt"].startswith("Q: ") or it["prompt"].count("Q: ") == 1
               for it in questions(model, config))


def test_sweep_options_are_checked():
    with pytest.raises(ConfigError, match="eval.temperatures"):
        EvalConfig(task="arithmetic")
    with pytest.raises(ConfigError, match="eval.temperatures=0.0 is out of range"):
        EvalConfig(task="gsm8k", temperatures=[0.0])
    with pytest.raises(ConfigError, match="with eval.temperatures"):
        EvalConfig(task="truthfulqa", temperatures=[1.0])


@pytest.mark.parametrize("recipe", ["sweep_smollm2_arithmetic.yaml",
                                    "sweep_gemma3_arithmetic.yaml"])
def test_sweep_recipe_runs_on_the_tiny_model(capsys, tmp_path, monkeypatch, recipe):
    from toolkit.recipes.load import load_recipe

    full = load_recipe(ROOT / "recipes" / recipe)
    assert full.eval.limit * full.eval.sweep_samples >= 128  # replies a cell
    monkeypatch.setenv("SURGERY_CACHE", str(tmp_path / "cache"))
    code = main(["eval", str(ROOT / "recipes" / recipe),
                 "model.preset=null", "model.tiny=llama", "eval.limit=2", "eval.sweep_samples=1",
                 "decoding.max_new_tokens=2", f"work_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 0 and "accuracy vs temperature, 2 questions x 1 samples" in out
    assert "| sampler | T=0.7 | T=1 | T=1.5 | T=2 | T=3 |" in out
    assert "| p-less | " in out and "| EDT | " in out
    assert json.loads((tmp_path / "eval" / "sweep.json").read_text())["questions"] == 2
