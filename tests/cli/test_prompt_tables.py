"""Prompts from a Parquet file or a `datasets` id, as from JSONL: the same completions, the
same checks, and one line when the source cannot be read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _generation import greedy_texts

from toolkit.cli.main import main
from toolkit.core.errors import DataError
from toolkit.graft.augmented import AugmentedModel
from toolkit.io.jsonl import read_prompts
from toolkit.io.tables import is_table, table_rows

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets")

PROMPTS = ["Hello there", "The cat sat on", "1 2 3"]


def _parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_sources_are_told_apart(tmp_path):
    (tmp_path / "org").mkdir()
    assert is_table(tmp_path / "p.parquet") and is_table("tatsu-lab/alpaca")
    assert is_table("tatsu-lab/alpaca:test")
    assert is_table("openai/gsm8k:main:test")
    assert not is_table(tmp_path / "p.jsonl") and not is_table(tmp_path / "org")
    assert not is_table("runs/missing.jsonl") and not is_table("data/TruthfulQA.csv")


def test_parquet_rows_are_checked_as_jsonl_lines(tmp_path):
    path = _parquet(tmp_path / "p.parquet", [
        {"prompt": "fine", "id": "a"},
        {"prompt": "", "id": "b"},
    ])
    with pytest.raises(DataError, match=r"p\.parquet:2: the prompt is empty"):
        read_prompts(path)
    chat = _parquet(tmp_path / "chat.parquet", [
        {"prompt": [{"role": "user", "content": "Hi"}]}])
    assert read_prompts(chat) == [(1, {"prompt": [{"role": "user", "content": "Hi"}]})]


@pytest.mark.parametrize("key", ["generate.input", "eval.data_path"])
def test_a_dataset_that_cannot_be_had_is_one_line(key, monkeypatch):
    """The line names the source and the key it came from, prompts or eval data alike."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        list(table_rows("no-such-org/no-such-dataset", key=key))
    line = str(err.value)
    assert line.startswith(f"cannot read the rows of 'no-such-org/no-such-dataset' ({key}) (")
    assert line.endswith("check the path or dataset id and split (ORG/NAME[:CONFIG]:SPLIT), or give "
                         "a local JSONL or Parquet file") and "\n" not in line


@pytest.fixture(scope="module")
def ckpt(tiny_llama_dir, tmp_path_factory) -> Path:
    return AugmentedModel.graft(str(tiny_llama_dir)).save_pretrained(
        tmp_path_factory.mktemp("tables") / "ckpt")


@pytest.mark.parametrize("kind", ["parquet", "datasets folder"])
def test_generate_reads_a_table_as_it_reads_jsonl(kind, ckpt, tmp_path, capsys, monkeypatch):
    rows = [{"id": i, "text": p} for i, p in enumerate(PROMPTS)]
    if kind == "parquet":
        source = str(_parquet(tmp_path / "in.parquet", rows))
    else:  # a dataset repo laid out as on the Hub, loaded by id from the working directory
        (tmp_path / "my-org" / "prompts").mkdir(parents=True)
        _parquet(tmp_path / "my-org" / "prompts" / "train.parquet", rows)
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
        source = "my-org/prompts:train"
    target = tmp_path / "gen.jsonl"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"run_name: t\noutput_dir: {tmp_path}/out\nwork_dir: {tmp_path}/work\n"
                      f"model:\n  path: {ckpt}\ndecoding:\n  max_new_tokens: 6\n")
    code = main(["generate", str(recipe), f"generate.input={source}",
                 "generate.prompt_field=text", f"generate.output={target}"])
    assert code == 0, capsys.readouterr().err
    got = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["id"], r["text"]) for r in got] == list(enumerate(PROMPTS))
    expected = greedy_texts(AugmentedModel.from_pretrained(ckpt), PROMPTS, 6)
    assert [r["completion"] for r in got] == expected
