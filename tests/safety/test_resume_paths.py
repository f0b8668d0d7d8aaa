"""A resume checkpoint names files Lightning reads or deletes (best, k-th best, last, the
best_k_models keys, its folder): each must lie inside this run's checkpoint folder, `..` and
links resolved, and must be a path at all (not bytes, not holding a NUL byte)."""

from __future__ import annotations

import pytest
import torch

from toolkit.core.errors import DataError
from toolkit.lpo import resume

KEY = "ModelCheckpoint{'monitor': 'eval_loss'}"


def _resume_file(tmp_path, **state):
    path = tmp_path / "last.ckpt"
    torch.save({"callbacks": {KEY: state}}, path)
    return path


@pytest.fixture
def run(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (tmp_path / "victim.txt").write_text("mine\n")
    return ck


@pytest.mark.parametrize("name", [*resume.PATH_KEYS, "best_k_models"])
def test_dotdot_out_of_the_run_folder_is_refused(tmp_path, run, name):
    value = f"{run}/../victim.txt"
    state = {"best_k_models": {value: torch.tensor(0.1)}} if name == "best_k_models" else {name: value}
    with pytest.raises(DataError, match=f"names {name}='{value}', outside this run's checkpoint"):
        resume.check(_resume_file(tmp_path, **state), run)
    assert (tmp_path / "victim.txt").read_text() == "mine\n"


def test_links_out_of_the_run_folder_are_refused_links_into_it_accepted(tmp_path, run):
    (run / "out").symlink_to(tmp_path)
    (tmp_path / "into").symlink_to(run)
    with pytest.raises(DataError, match="names best_model_path=.*outside this run's"):
        resume.check(_resume_file(tmp_path, best_model_path=str(run / "out" / "victim.txt")), run)
    with pytest.raises(DataError, match="names best_k_models=.*outside this run's"):
        resume.check(_resume_file(tmp_path, best_k_models={str(run / "out" / "v.ckpt"): 1.0}), run)
    inner = str(tmp_path / "into" / "best.ckpt")
    resume.check(_resume_file(tmp_path, best_model_path=inner, best_k_models={inner: 1.0},
                              dirpath=str(run)), run)


@pytest.mark.parametrize("value", [b"/etc/hostname", "ck/a\0b", 5, ["a"]])
def test_a_value_that_is_no_path_is_one_line(tmp_path, run, value):
    with pytest.raises(DataError, match="names best_model_path=.*which is not a path"):
        resume.check(_resume_file(tmp_path, best_model_path=value), run)
    with pytest.raises(DataError, match="names best_k_models=.*which is not a path"):
        resume.check(_resume_file(tmp_path, best_k_models={value: 1.0} if isinstance(
            value, (str, bytes, int)) else value), run)
