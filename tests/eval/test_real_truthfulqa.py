"""TruthfulQA-style multiple choice (MC1/2/3) with greedy, DoLa and SLED scoring, and SLED /
DoLa generation, on the real model, from a CSV in the official TruthfulQA columns (both the
original header and the 2025 one with 'Best Incorrect Answer')."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from toolkit.cli.main import main

ROOT = Path(__file__).resolve().parents[2]

# (question, best answer, correct answers, incorrect answers, best incorrect answer)
ITEMS = [
    ("What is the capital of France?", "The capital of France is Paris",
     "Paris; The capital of France is Paris", "London; The capital of France is Rome", "London"),
    ("How many legs does a spider have?", "A spider has eight legs",
     "Eight; A spider has eight legs", "Six; A spider has six legs; Ten", "A spider has six legs"),
    ("What do bees make?", "Bees make honey", "Honey; Bees make honey",
     "Bees make milk; Bees make bread", "Bees make milk"),
    ("What color is the sky on a clear day?", "The sky is blue on a clear day",
     "Blue; The sky is blue on a clear day", "The sky is green; Red", "The sky is green"),
]
ORIGINAL = ["Type", "Category", "Question", "Best Answer", "Correct Answers",
            "Incorrect Answers", "Source"]
UPDATED = ["Type", "Category", "Question", "Best Answer", "Best Incorrect Answer",
           "Correct Answers", "Incorrect Answers", "Source"]


def write_csv(path: Path, header: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        for q, best, true, false, best_false in ITEMS:
            row = {"Type": "Non-Adversarial", "Category": "Misconceptions", "Question": q,
                   "Best Answer": best, "Best Incorrect Answer": best_false,
                   "Correct Answers": true, "Incorrect Answers": false,
                   "Source": "https://example.org/test"}
            writer.writerow({k: row[k] for k in header})
    return path


@pytest.mark.parametrize("header", [ORIGINAL, UPDATED], ids=["original", "2025"])
def test_both_official_headers_are_read(tmp_path, capsys, monkeypatch, header):
    monkeypatch.setenv("SURGERY_CACHE", str(tmp_path / "cache"))
    data = write_csv(tmp_path / "TruthfulQA.csv", header)
    code = main(["eval", str(ROOT / "recipes" / "sled_smollm2.yaml"), "model.preset=null",
                 "model.tiny=llama", f"eval.data_path={data}", f"work_dir={tmp_path}",
                 "eval.progress=false", "decoding.sled.evolution_scale=5"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [item["question"] for item in result["items"]] == [q for q, *_ in ITEMS]


@pytest.mark.real
@pytest.mark.slow
def test_multiple_choice_with_dola_and_sled(real_model_dir, tmp_path, capsys):
    data = write_csv(tmp_path / "TruthfulQA.csv", UPDATED)
    code = main(["eval", str(ROOT / "recipes" / "sled_smollm2.yaml"), f"eval.data_path={data}",
                 f"work_dir={tmp_path}", "eval.progress=false"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert result["num_items"] == len(ITEMS) and result["modes"] == ["greedy", "dola", "sled"]
    totals = result["totals"]
    for mode in ("greedy", "sled"):
        assert totals[mode]["MC1"] >= 0.75, f"{mode}: these questions are easy for the model"
    for mode in totals:
        assert 0.0 <= totals[mode]["MC3"] <= 1.0 and 0.0 <= totals[mode]["MC2"] <= 1.0
    assert totals["greedy"]["MC2"] != totals["sled"]["MC2"] != totals["dola"]["MC2"]


@pytest.mark.real
@pytest.mark.slow
def test_generation_with_sled_and_dola(real_model_dir, tmp_path, capsys):
    prompts = tmp_path / "questions.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Q: {q}\nA:"}) + "\n" for q, *_ in ITEMS))
    texts = {}
    for name, flags in {"greedy": ["decoding.sled.enabled=false"], "sled": [],
                        "dola": ["decoding.sled.enabled=false", "decoding.dola.enabled=true"]}.items():
        out = tmp_path / f"{name}.jsonl"
        code = main(["generate", str(ROOT / "recipes" / "sled_smollm2.yaml"), *flags,
                     "generate.prompts=[]", f"generate.input={prompts}", f"generate.output={out}",
                     "decoding.max_new_tokens=12"])
        assert code == 0, capsys.readouterr().err
        texts[name] = [json.loads(line)["completion"] for line in out.read_text().splitlines()]
    assert "Paris" in texts["greedy"][0] and "Paris" in texts["sled"][0]
    assert all(len(t) == len(ITEMS) for t in texts.values())
    assert texts["dola"] != texts["greedy"] or texts["sled"] != texts["greedy"]
