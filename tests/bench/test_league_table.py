"""benchmarks/league_table.py: every row and column on the tiny Llama (blank where a column does
not apply), the table between its markers in the figures page, and resuming: finished cells are
skipped, a lost cell is computed again, a store with other settings is refused; runs sharing a
store (`--worker`) compute each cell once and keep each other's cells. The real-model
path runs a reduced table on SmolLM2 (`real`)."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--questions", "2", "--replies", "2", "--reward-prompts", "1", "--arith-tokens", "3",
         "--speed-tokens", "2", "--repeats", "1"]


def _script():
    spec = importlib.util.spec_from_file_location("league_table", ROOT / "benchmarks" /
                                                  "league_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _truthfulqa(path: Path) -> Path:
    path.write_text("Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"
                    "A,B,What do bees make?,Bees make honey,Honey; Bees make honey,Milk; Bread,s\n"
                    "A,B,Is the sky blue?,Yes,Yes; It is,No; Never,s\n")
    return path


def test_every_row_and_column_then_resume(tmp_path, tiny_llama_dir, capsys):
    from _generation import graft

    league = _script()
    head = tmp_path / "head"
    graft(tiny_llama_dir).save_pretrained(head)
    figures = tmp_path / "figures.md"
    figures.write_text("# Figures\n\nbefore\n<!-- league:tiny:llama -->\nold\n"
                       "<!-- /league:tiny:llama -->\nafter\n")
    argv = ["tiny:llama", "--truthfulqa", str(_truthfulqa(tmp_path / "tqa.csv")), "--head",
            str(head), "--out", str(tmp_path / "out"), "--figures", str(figures), *SMALL]
    assert league.main(argv) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "out" / "league.json").read_text())
    cells = data["cells"]
    scored = {r.name for r in league.ROWS if r.scored}
    assert {k.split("/")[0] for k in cells if k.endswith("/truthfulqa")} == scored
    for row in league.ROWS:
        keys = {"T=1", "T=2"} if row.sampled else {"own"}
        assert {k.split("@")[1] for k in cells if k.startswith(f"{row.name}/arithmetic@")} == keys
        assert 0.0 <= cells[f"{row.name}/arithmetic@{sorted(keys)[0]}"] <= 1.0
        assert f"{row.name}/reward" in cells
    for metric in ("MC1", "MC2", "MC3"):
        assert 0.0 <= cells["greedy/truthfulqa"][metric] <= 1.0
    assert cells["speed"]["greedy"] == 1.0 and set(cells["speed"]) == {r.name for r in league.ROWS}
    text = figures.read_text()
    assert text.startswith("# Figures\n\nbefore\n<!-- league:tiny:llama -->\n| method | MC1 |")
    assert text.endswith("<!-- /league:tiny:llama -->\nafter\n") and "old" not in text
    assert "| sampling |  |  |  | " in text and "| learned head |" in text
    assert "took " in out and "h of computing cells in all" in out
    before = figures.read_text()
    assert league.main([*argv, "--worker"]) == 0  # nothing left to help with
    assert capsys.readouterr().out.splitlines()[-1].startswith("worker done: ")
    assert figures.read_text() == before  # a worker writes no table

    del data["cells"]["dola/reward"]
    (tmp_path / "out" / "league.json").write_text(json.dumps(data))
    assert league.main(argv) == 0
    again = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert len(again) == 1 and again[0].startswith("  dola/reward: ")

    data = json.loads((tmp_path / "out" / "league.json").read_text())
    gone = ("dola/truthfulqa", "contrastive/truthfulqa")  # scored in one pass, on one graft
    kept = {k: v for k, v in data["cells"].items() if k not in gone}
    (tmp_path / "out" / "league.json").write_text(json.dumps(data | {"cells": kept}))
    assert league.main(argv) == 0
    again = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert [line.split(":")[0] for line in again] == [f"  {k}" for k in gone]
    assert all(line.endswith("s, 2 cells in one pass)") for line in again)
    assert json.loads((tmp_path / "out" / "league.json").read_text())["cells"] == data["cells"]
    assert figures.read_text().count("<!-- league:tiny:llama -->") == 1

    assert league.main([*argv, "--replies", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0]


def test_rows_scored_in_one_pass_get_the_cells_each_gets_alone(tmp_path, tiny_llama_dir):
    from toolkit.recipes.models import load_model
    from toolkit.recipes.schema import ModelConfig

    league = _script()
    rows = {r.name: r for r in league.ROWS}
    groups = league.scoring_groups(list(league.ROWS))
    assert [[r.name for r in g] for g in groups] == [
        ["greedy", "sled", "dola", "contrastive"], ["sled_official"], ["delta"], ["delta_late"]]
    am = load_model(ModelConfig(path=str(tiny_llama_dir)))
    args = league.parse(["tiny:llama", "--truthfulqa", str(_truthfulqa(tmp_path / "tqa.csv"))])
    together = league.truthfulqa_cells(am, groups[0], args, tmp_path / "together")
    for name in ("greedy", "sled", "dola", "contrastive"):
        alone = league.truthfulqa_cells(am, [rows[name]], args, tmp_path / name)
        assert together[f"{name}/truthfulqa"] == pytest.approx(alone[f"{name}/truthfulqa"],
                                                               abs=1e-12)
    assert together["sled/truthfulqa"] != together["dola/truthfulqa"]


def test_runs_sharing_a_store_keep_each_others_cells_and_compute_each_once(tmp_path):
    league = _script()
    path = tmp_path / "league.json"
    first, second = (league.Store(path, {"model": "m"}) for _ in range(2))
    assert first.cell("greedy/reward", lambda: 0.25) == 0.25
    assert second.cell("dola/reward", lambda: 0.5) == 0.5  # reads the file, adds its cell
    assert json.loads(path.read_text())["cells"] == {"greedy/reward": 0.25, "dola/reward": 0.5}
    assert second.cell("greedy/reward", lambda: pytest.fail("computed twice")) == 0.25

    key = "sled/arithmetic@T=1"
    claimed, done = threading.Event(), []

    def other_run():  # holds the claim while it computes, as another process would
        with first.claim(key):
            claimed.set()
            time.sleep(0.5)
            first.update(lambda data: data["cells"].__setitem__(key, 0.75), seconds=2.0)
            done.append(time.perf_counter())

    thread = threading.Thread(target=other_run)
    thread.start()
    claimed.wait()
    assert second.cell(key, lambda: pytest.fail("claimed by the other run")) is None
    assert second.skipped == [key]
    second.wait()
    assert done and second.data["cells"][key] == 0.75
    thread.join()
    assert json.loads(path.read_text())["seconds"] == pytest.approx(2.0, abs=0.5)
    with pytest.raises(league.ToolkitError, match="other settings"):
        league.Store(path, {"model": "other"})


def test_a_link_or_file_at_a_lock_name_is_refused_or_left_as_it_is(tmp_path, capsys):
    league = _script()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "league.lock").symlink_to(victim)
    argv = ["tiny:llama", "--out", str(out), "--figures", str(tmp_path / "f.md"), *SMALL]
    assert league.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "league.lock" in err[0]
    assert victim.read_text() == "precious" and (out / "league.lock").is_symlink()

    (out / "league.lock").unlink()
    (out / "league.lock").write_text("someone's file")
    store = league.Store(out / "league.json", {"model": "m"})
    assert store.cell("greedy/reward", lambda: 0.5) == 0.5
    assert (out / "league.lock").read_text() == "someone's file"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plants = (lambda at: at.symlink_to(elsewhere), lambda at: at.write_text("a file"))
    for i, planted in enumerate(plants):
        other = tmp_path / f"other{i}"
        other.mkdir()
        planted(other / "claims")
        assert league.main(["tiny:llama", "--out", str(other), "--figures",
                            str(tmp_path / "f.md"), *SMALL]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "claims is not a folder this script made" in err[0]
    assert list(elsewhere.iterdir()) == []


@pytest.mark.real
@pytest.mark.slow
def test_a_reduced_table_on_the_real_model(real_model_dir, tmp_path, capsys):
    league = _script()
    argv = ["smollm2-135m-instruct", "--truthfulqa", str(_truthfulqa(tmp_path / "tqa.csv")),
            "--rows", "greedy,p_less,edt,delta", "--out", str(tmp_path / "out"),
            "--figures", str(tmp_path / "figures.md"), *SMALL]
    assert league.main(argv) == 0
    cells = json.loads((tmp_path / "out" / "league.json").read_text())["cells"]
    assert set(cells["speed"]) == {"greedy", "p_less", "edt", "delta"}
    assert 0.0 <= cells["delta/truthfulqa"]["MC2"] <= 1.0
    assert "| DeLTa +1, layers 1..L-1 | " in (tmp_path / "figures.md").read_text()
