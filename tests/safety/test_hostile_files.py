"""Crafted files on every route that could unpickle or import them: each file would create a
marker if its code ran; the marker must never appear, and each refusal is one clear line. Also
hostile sizes (bounded memory while reading) and the source itself (no unsafe load anywhere)."""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from toolkit.core.errors import CheckpointError, ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]


class Marker:
    """Unpickled, it creates the file `path`."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_no_unsafe_load_in_the_source():
    """Every torch.load says weights_only=True; nothing imports pickle or enables remote code."""
    for path in sorted((ROOT / "toolkit").rglob("*.py")) + [ROOT / "cli.py"]:
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert "weights_only=False" not in text, path
        assert not re.search(r"^\s*(import pickle|from pickle|import dill)", text, re.M), path
        assert not re.search(r"trust_remote_code=True\)?\s*$", text.split('"""')[0], re.M), path


def _pairs(path: Path, count: int = 16) -> Path:
    gen = torch.Generator().manual_seed(0)
    with open(path, "w") as fh:
        for i in range(count):
            ids = torch.randint(3, 300, (6,), generator=gen).tolist()
            fh.write(json.dumps({"id": str(i), "prompt_ids": ids[:3], "chosen_ids": ids[3:5],
                                 "rejected_ids": ids[5:], "chosen_tau": [i % 6, 0],
                                 "rejected_tau": [5 - i % 6]}) + "\n")
    return path


@pytest.mark.slow
def test_resume_checkpoint_naming_a_pickle_as_best_runs_no_code(tiny_llama_dir, tmp_path):
    """A real Lightning checkpoint, its ModelCheckpoint state edited to name a malicious file
    inside the checkpoint folder as the best model (and a score no epoch beats): training
    resumes, and the export refuses that file instead of unpickling it."""
    from toolkit.graft.augmented import AugmentedModel
    from toolkit.lpo.config import TrainConfig, TrainerConfig
    from toolkit.lpo.train import train_head
    from toolkit.methods.options import GraftConfig, HeadConfig

    model = AugmentedModel.graft(tiny_llama_dir, GraftConfig(head=HeadConfig(hidden_size=16)))
    pairs, ckpts = _pairs(tmp_path / "pairs.jsonl"), tmp_path / "ckpts"

    def trainer(**kw):
        return TrainerConfig(accelerator="cpu", max_epochs=1, batch_size=4, seed=0,
                             checkpoint_dir=str(ckpts), **kw)

    train_head(model, pairs, TrainConfig(val_fraction=0.25), trainer(), tmp_path / "a")
    state = torch.load(ckpts / "last.ckpt", weights_only=True)
    (key,) = [k for k in state["callbacks"] if k.startswith("ModelCheckpoint")]
    torch.save(Marker(tmp_path / "marker"), ckpts / "evil.ckpt")
    state["callbacks"][key].update(best_model_path=str(ckpts / "evil.ckpt"),
                                   best_model_score=torch.tensor(-1e9))
    torch.save(state, ckpts / "last.ckpt")
    with pytest.raises(DataError, match="best checkpoint=.*evil.ckpt' holds objects a safe load "
                       "refuses \\(UnpicklingError"):
        train_head(model, pairs, TrainConfig(val_fraction=0.25),
                   trainer(ckpt_path=str(ckpts / "last.ckpt"), max_steps=4), tmp_path / "b")
    assert not (tmp_path / "marker").exists()
    state["callbacks"][key]["best_model_path"] = "/etc/hostname"
    torch.save(state, ckpts / "last.ckpt")
    with pytest.raises(DataError, match="names best_model_path='/etc/hostname', outside this "
                       "run's checkpoint folder"):
        train_head(model, pairs, TrainConfig(val_fraction=0.25),
                   trainer(ckpt_path=str(ckpts / "last.ckpt")), tmp_path / "b")


def test_pickle_weights_are_never_loaded(tiny_llama_dir, tmp_path):
    """A base or reward model holding only pytorch_model.bin is refused, not unpickled."""
    import shutil

    from toolkit.graft.augmented import AugmentedModel
    from toolkit.lpo.config import RewardConfig
    from toolkit.lpo.rewards import build_reward

    folder = tmp_path / "model"
    folder.mkdir()
    for path in Path(tiny_llama_dir).iterdir():
        if not path.name.endswith(".safetensors"):
            shutil.copy(path, folder / path.name)
    torch.save({"model.embed_tokens.weight": Marker(tmp_path / "marker")},
               folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="holds its weights only as a pickle"):
        AugmentedModel.graft(folder)
    with pytest.raises(ConfigError, match="is not a local sequence-classification model"):
        build_reward(RewardConfig(kind="reward_model", model_path=str(folder)))
    assert not (tmp_path / "marker").exists()


def test_a_50_mb_line_is_refused_fast_in_bounded_memory(tmp_path):
    from toolkit.io.jsonl import MAX_LINE_BYTES, read_prompts

    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "' + "x" * (50 * 2**20) + '"}\n')
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        read_prompts(path)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(info.value) == (f"{path}:1: the line is longer than 8 MiB, the most one JSONL "
                               "record may hold; shorten or split that record")
    assert peak < 2 * MAX_LINE_BYTES + 2**20 and seconds < 5, (peak, seconds)


def test_a_long_prompt_is_refused_without_echoing_it(tmp_path):
    from toolkit.io.jsonl import MAX_PROMPT_CHARS, read_prompts
    from toolkit.recipes.schema import GenerateConfig

    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"prompt": "z" * (MAX_PROMPT_CHARS + 1)}) + "\n")
    with pytest.raises(DataError) as info:
        read_prompts(path)
    assert str(info.value) == (f"{path}:1: the prompt has {MAX_PROMPT_CHARS + 1} characters, "
                               f"more than the {MAX_PROMPT_CHARS} a prompt may hold; shorten it")
    with pytest.raises(ConfigError, match="generate.prompts\\[0\\] has 1048577 characters") as info:
        GenerateConfig(prompts=["z" * (MAX_PROMPT_CHARS + 1)])
    assert "zzz" not in str(info.value)


def test_format_version_boundary(tmp_path):
    """The newest known version parses; the next one (and any later) is refused by name."""
    from toolkit.graft.integrity import FORMAT_VERSION, REQUIRED, parse_config

    base = {"graft": {"layers": "all", "early_exit_norm": False,
                      "head": {"hidden_size": 8, "temperatures": [0.0, 1.0], "level": "sequence"}},
            "decoding": {}, "base": "x", "base_fingerprint": {"sha256": "0", "keys": {}},
            "files": {}, "weight_fingerprint": {}}
    graft, _ = parse_config({**base, "format_version": FORMAT_VERSION}, tmp_path / "c.json")
    assert graft.head.hidden_size == 8 and set(REQUIRED) == set(range(1, FORMAT_VERSION + 1))
    for version in (FORMAT_VERSION + 1, FORMAT_VERSION + 2):
        with pytest.raises(CheckpointError, match=f"has format_version {version}, newer than "
                           f"this toolkit reads \\(up to {FORMAT_VERSION}\\)"):
            parse_config({**base, "format_version": version}, tmp_path / "c.json")


def test_lm_eval_cli_offline_hub_error_is_one_line(monkeypatch, tmp_path, capsys):
    pytest.importorskip("lm_eval")
    import huggingface_hub

    from toolkit.eval import harness

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr("sys.argv", ["lm_eval", "run", "--model", "surgery", "--model_args",
                                     "pretrained=org/not-cached", "--tasks", "arc_easy",
                                     "--limit", "1"])
    code = harness.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: no local directory 'org/not-cached' exists, and the Hugging "
                              "Face Hub gave no model of that id"), err[-3:]
