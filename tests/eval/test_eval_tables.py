"""Evaluation data from a Parquet file or a `datasets` id reads as its CSV or JSONL does."""

from __future__ import annotations

import csv

import pytest

from toolkit.core.errors import DataError
from toolkit.eval import generation, truthfulqa
from toolkit.io.jsonl import BadRows

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("datasets")

ROWS = [
    {"Question": "What colour is the sky?", "Best Answer": "Blue",
     "Correct Answers": "Blue; Light blue", "Incorrect Answers": "Green; Red"},
    {"Question": "How many legs has a spider?", "Best Answer": "Eight",
     "Correct Answers": "Eight", "Incorrect Answers": "Six; Ten"},
]


def test_truthfulqa_from_parquet_equals_its_csv(tmp_path):
    path = tmp_path / "tqa.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=truthfulqa.COLUMNS)
        writer.writeheader()
        writer.writerows(ROWS)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "tqa.parquet")
    from_csv = truthfulqa.load(str(path), BadRows())
    from_parquet = truthfulqa.load(str(tmp_path / "tqa.parquet"), BadRows())
    assert [i["line"] for i in from_parquet] == [1, 2]
    strip = [{k: v for k, v in i.items() if k != "line"} for i in from_csv]
    assert [{k: v for k, v in i.items() if k != "line"} for i in from_parquet] == strip


def test_a_missing_column_names_the_row(tmp_path):
    pq.write_table(pa.Table.from_pylist([{"Question": "Q?"}]), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad\.parquet:1: missing column\(s\) Best Answer, "):
        truthfulqa.load(str(tmp_path / "bad.parquet"), BadRows())


def test_gsm8k_from_a_dataset_id(tmp_path, monkeypatch):
    """A dataset laid out as on the Hub (here a local folder of that id), with a split."""
    folder = tmp_path / "my-org" / "gsm"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([
        {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"},
        {"question": "What is 4 * 4?", "answer": "#### 16"},
    ]), folder / "test.parquet")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    items = generation.load("gsm8k", "my-org/gsm:test", BadRows())
    assert [(i["question"], i["gold"], i["line"]) for i in items] == [
        ("What is 2 + 3?", "5", 1), ("What is 4 * 4?", "16", 2)]


def test_column_names_come_from_the_schema_without_reading_rows(tmp_path, monkeypatch):
    from toolkit.eval.data import csv_columns
    from toolkit.io import tables

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "tqa.parquet")
    pq.write_table(pa.table({"prefix": pa.array([], pa.string()),
                             "contradiction_0": pa.array([], pa.string())}),
                   tmp_path / "empty.parquet")
    monkeypatch.setattr(tables, "_parquet", lambda path: pytest.fail("read every row"))
    assert csv_columns(tmp_path / "tqa.parquet") == list(ROWS[0])
    assert csv_columns(tmp_path / "empty.parquet") == ["prefix", "contradiction_0"]
    with pytest.raises(DataError, match=r"'.*missing\.parquet' \(eval\.data_path\) does not"):
        csv_columns(tmp_path / "missing.parquet")
