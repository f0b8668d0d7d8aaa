"""Prompt records from tables: a Parquet file, or a Hugging Face `datasets` id.

`read_prompts` (and the eval data readers) take these beside JSONL and CSV: a path ending in
`.parquet`, or `ORG/NAME` (optionally `ORG/NAME:SPLIT` or `ORG/NAME:CONFIG:SPLIT`, default split
`train`) that is no local file, loaded with `datasets`
(`load_dataset`: a local folder of that name laid out as a dataset repo, else as cached or
fetched from the Hub). Each row is one record, numbered from 1
as a JSONL line is, and checked as a JSONL record is. `datasets` (with pyarrow) is an optional
dependency, part of the `dev` and `lm-eval` extras; without it these sources say so in one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolkit.core.errors import DataError

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt")
DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+){0,2}")


def is_table(path: str | Path) -> bool:
    """Whether `path` names a Parquet file or a `datasets` id rather than a JSONL file."""
    text = str(path)
    if text.endswith(".parquet"):
        return True
    local = Path(text)
    if text.split(":")[0].lower().endswith(FILE_SUFFIXES):  # a missing file, named as such
        return False
    return DATASET_ID.fullmatch(text) is not None and (local.is_dir() or not local.exists())


def table_rows(path: str | Path, key: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based row number, row as a dict) of a Parquet file or a `datasets` split."""
    text = str(path)
    rows = _reading(text, key, _parquet if text.endswith(".parquet") else _split)
    yield from enumerate(rows, start=1)


def table_columns(path: str | Path, key: str = "") -> list[str]:
    """The column names of a Parquet file (read from its schema, no rows) or a `datasets` split."""
    text = str(path)
    return _reading(text, key, _parquet_columns if text.endswith(".parquet") else _split_columns)


def _reading(text: str, key: str, read) -> Any:
    """read(text), with every failure but a missing module said in one line naming the source."""
    where = f" ({key})" if key else ""
    if text.endswith(".parquet") and not Path(text).is_file():
        raise DataError(f"data file {text!r}{where} does not exist")
    try:
        return read(text)
    except DataError:
        raise
    except Exception as err:  # network, a missing split, a damaged file: one line
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise DataError(f"cannot read the rows of {text!r}{where} ({type(err).__name__}: "
                        f"{detail}); check the path or dataset id and split (ORG/NAME[:CONFIG]:SPLIT), "
                        "or give a local JSONL or Parquet file") from None


def _parquet(path: str) -> list[dict[str, Any]]:
    parquet = _optional("pyarrow.parquet", path)
    return parquet.read_table(path).to_pylist()


def _parquet_columns(path: str) -> list[str]:
    return list(_optional("pyarrow.parquet", path).read_schema(path).names)


def _split(name_and_split: str) -> list[dict[str, Any]]:
    return [dict(row) for row in _dataset(name_and_split)]


def _split_columns(name_and_split: str) -> list[str]:
    return list(_dataset(name_and_split).column_names)


def _dataset(name_and_split: str) -> Any:
    datasets = _optional("datasets", name_and_split)
    name, *rest = name_and_split.split(":")
    config, split = (None, *rest) if len(rest) < 2 else rest
    return datasets.load_dataset(name, config, split=split or "train")


def _optional(module: str, path: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"{path!r} is a Parquet file or a datasets id, which needs the datasets "
                        "package (with pyarrow); pip install datasets, or give a JSONL "
                        "file") from None
