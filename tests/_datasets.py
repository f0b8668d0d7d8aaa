"""Small dataset files of the real formats, shared by the tests that need one."""

from __future__ import annotations

import csv
from pathlib import Path


def truthfulqa_csv(path: Path) -> None:
    """A two-question TruthfulQA CSV (the columns of the released file) at `path`."""
    items = [("What is the capital of France?", "The capital of France is Paris",
              "Paris; The capital of France is Paris", "London; The capital of France is Rome"),
             ("What do bees make?", "Bees make honey", "Honey; Bees make honey",
              "Bees make milk; Bees make bread")]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers",
                         "Incorrect Answers", "Source"])
        for q, best, true, false in items:
            writer.writerow(["Non-Adversarial", "Misconceptions", q, best, true, false, "x"])
