"""Temp files cannot be redirected: every writer stages its file in a private folder made with
an unpredictable name (`toolkit.io.staging`), so a link planted where the old writers put their
temp file (`.PID.tmp.NAME`, `.NAME.PID.tmp`) is never followed and the file it points at keeps
its bytes and mode. Leftover folders are those no process holds a lock on, whatever the PID in
their name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.io import atomic, provenance, reports, staging
from toolkit.io.reports import MANIFEST


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_text("the user's bytes\n")
    path.chmod(0o600)
    return path


def _plant(folder: Path, names: list[str], victim: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(victim)


def _untouched(victim: Path) -> None:
    assert victim.read_text() == "the user's bytes\n"
    assert victim.stat().st_mode & 0o777 == 0o600


def test_reports_and_their_manifest_do_not_follow_planted_links(tmp_path, victim):
    out, pid = tmp_path / "out", os.getpid()
    planted = [f".{pid}.tmp.r.json", f".{pid}.tmp{MANIFEST}"]
    _plant(out, planted, victim)
    reports.write_text(out, "r.json", "eval.output_dir", "{}\n")
    _untouched(victim)
    assert (out / "r.json").read_text() == "{}\n"
    assert sorted(p.name for p in out.iterdir()) == sorted([*planted, MANIFEST, "r.json"])


def test_provenance_does_not_follow_a_planted_link(tmp_path, victim):
    data = tmp_path / "pairs.jsonl"
    _plant(tmp_path, [f".pairs.jsonl.producer.json.{os.getpid()}.tmp"], victim)
    provenance.record(data, {"seed": 1})
    _untouched(victim)
    assert provenance.sidecar(data).is_file() and not provenance.sidecar(data).is_symlink()


def test_jsonl_output_does_not_follow_a_planted_link(tmp_path, victim):
    from toolkit.cli.predict import write_jsonl

    _plant(tmp_path, [f".o.jsonl.{os.getpid()}.tmp"], victim)
    write_jsonl(tmp_path / "o.jsonl", [{"a": 1}])
    _untouched(victim)
    assert (tmp_path / "o.jsonl").read_text() == '{"a": 1}\n'


def test_lightning_checkpoints_do_not_follow_a_planted_link(tmp_path, victim):
    from toolkit.lpo.train import LocalCheckpointIO

    _plant(tmp_path / "ck", [f".last.ckpt.{os.getpid()}.tmp"], victim)
    LocalCheckpointIO().save_checkpoint({"step": 3}, tmp_path / "ck" / "last.ckpt")
    _untouched(victim)
    assert (tmp_path / "ck" / "last.ckpt").stat().st_size > 0


def test_a_link_at_the_target_is_replaced_not_followed(tmp_path, victim):
    target = tmp_path / "o.txt"
    target.symlink_to(victim)
    with staging.replacing(target) as tmp:
        assert tmp.parent.stat().st_mode & 0o777 == 0o700  # a private folder
        tmp.write_text("new\n")
    _untouched(victim)
    assert not target.is_symlink() and target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["elsewhere", "o.txt"]  # nothing left over


def test_an_error_leaves_the_target_and_nothing_beside(tmp_path):
    target = tmp_path / "o.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), staging.replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["o.txt"]


HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_leftovers_are_the_folders_nobody_holds_whatever_their_pid(tmp_path):
    """A writer in another container has a PID this machine may give a live process, or none:
    only the lock it holds says it is at work."""
    target = tmp_path / "ckpt"
    held = tmp_path / f".ckpt.partial-{os.getpid()}-abc123"  # a PID that is alive here
    free_live_pid = tmp_path / f".ckpt.partial-{os.getppid()}-def456"
    for folder in (held, free_live_pid):
        folder.mkdir()
        (folder / "f").write_text("x")
    writer = subprocess.Popen([sys.executable, "-c", HOLD, str(held)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "held\n"
        atomic.recover(target, lambda path: True)
        assert sorted(p.name for p in tmp_path.iterdir()) == [held.name]
    finally:
        writer.communicate("")
    atomic.recover(target, lambda path: True)
    assert list(tmp_path.iterdir()) == []


def test_a_link_at_a_reports_name_is_refused_whatever_it_points_at(tmp_path, victim):
    """Even a link to a file with the hash the manifest records, or a dangling one."""
    from toolkit.core.errors import DataError
    from toolkit.io.files import sha256_file

    out = tmp_path / "out"
    reports.write_text(out, "r.json", "eval.output_dir", "the user's bytes\n")
    assert sha256_file(out / "r.json") == sha256_file(victim)
    for points_at in (victim, tmp_path / "missing"):
        (out / "r.json").unlink()
        (out / "r.json").symlink_to(points_at)
        with pytest.raises(DataError, match="holds r.json, which this toolkit did not write"):
            reports.check(out, ["r.json"], "eval.output_dir")
    _untouched(victim)
