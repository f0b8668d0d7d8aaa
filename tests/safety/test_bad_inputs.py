"""A table of bad inputs and faults, each run through the CLI: one `error:` line on stderr, exit
code 2, no traceback, no code run from a crafted file (none creates its marker), no byte of a
file that existed before the run changed, and (for those marked `early`) before any model
weights load."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from toolkit.cli.main import main
from toolkit.graft.integrity import FORMAT_VERSION

GRAFT = "graft:\n  head:\n    hidden_size: 16\n"


@dataclass
class Case:
    command: str
    overrides: list[str]
    expected: str
    early: bool = True
    setup: Callable[[Path, dict], None] | None = None
    extra: dict = field(default_factory=dict)


def _write(name: str, data: bytes | str) -> Callable[[Path, dict], None]:
    def setup(tmp: Path, env: dict) -> None:
        path = tmp / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())

    return setup


def _pairs(**change) -> str:
    line = {"id": "0", "prompt_ids": [5, 6], "chosen_ids": [7], "rejected_ids": [8],
            "chosen_tau": [0], "rejected_tau": [5]}
    return json.dumps({**line, **change}) + "\n"


def _copy_tiny(keep: Callable[[Path], bool], edit: Callable[[Path], None] | None = None):
    def setup(tmp: Path, env: dict) -> None:
        target = tmp / "model"
        target.mkdir()
        for path in Path(env["tiny"]).iterdir():
            if keep(path):
                shutil.copy(path, target / path.name)
        if edit:
            edit(target)

    return setup


def _truncate(target: Path) -> None:
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])


def _edit_ckpt(edit: Callable[[dict], None] | None = None, files: Callable[[Path], None] | None = None):
    def setup(tmp: Path, env: dict) -> None:
        target = tmp / "ckpt"
        shutil.copytree(env["ckpt"], target)
        if edit:
            path = target / "augment_config.json"
            config = json.loads(path.read_text())
            edit(config)
            path.write_text(json.dumps(config))
        if files:
            files(target)

    return setup


def _flip(target: Path) -> None:
    head = target / "head.safetensors"
    data = bytearray(head.read_bytes())
    data[-2] ^= 0xFF
    head.write_bytes(bytes(data))


def _nan_model(tmp: Path, env: dict) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(env["tiny"])
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    model.save_pretrained(tmp / "nan-model")
    for path in Path(env["tiny"]).glob("tokenizer*"):
        shutil.copy(path, tmp / "nan-model" / path.name)


def _project(tmp: Path, env: dict) -> None:
    (tmp / "project" / ".git").mkdir(parents=True)
    (tmp / "project" / "main.py").write_text("print(1)\n")


def _ckpt_with_notes(tmp: Path, env: dict) -> None:
    _edit_ckpt()(tmp, env)
    (tmp / "ckpt" / "notes.txt").write_text("mine")


def _producer_then_other_seed(tmp: Path, env: dict) -> None:
    (tmp / "pairs.jsonl").write_text(json.dumps({"id": "0", "reward": 0.0}) + "\n")
    (tmp / "pairs.jsonl.producer.json").write_text(json.dumps({"producers": [{"seed": 1}]}))


class _Marker:
    """Pickled, it creates `{tmp}/marker` when unpickled: proof that code ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _pickle_file(name: str, wrap: Callable[[object], object] = lambda evil: {"state_dict": evil}):
    def setup(tmp: Path, env: dict) -> None:
        torch.save(wrap(_Marker(tmp / "marker")), tmp / name)

    return setup


def _pickle_base(tmp: Path, env: dict) -> None:
    _copy_tiny(lambda p: not p.name.endswith(".safetensors"))(tmp, env)
    _pickle_file("model/pytorch_model.bin", lambda evil: {"model.embed_tokens.weight": evil})(tmp, env)


def _safetensors_header(header) -> Callable[[Path], None]:
    def edit(target: Path) -> None:
        data = json.dumps(header).encode()
        (target / "model.safetensors").write_bytes(len(data).to_bytes(8, "little") + data + b"\0" * 64)

    return edit


def _resume_naming(tmp: Path, env: dict) -> None:
    """A resume checkpoint that loads safely but names a pickle outside the run as its best."""
    _write("pairs.jsonl", _pairs())(tmp, env)
    _pickle_file("evil.ckpt")(tmp, env)
    state = {"best_model_path": str(tmp / "evil.ckpt"), "dirpath": str(tmp / "ckpts")}
    torch.save({"callbacks": {"ModelCheckpoint{'monitor': 'eval_loss'}": state}}, tmp / "last.ckpt")


def _nan_reward(tmp: Path, env: dict) -> None:
    (tmp / "nanreward.py").write_text("def score(prompt, reply, record):\n    return float('nan')\n")
    (tmp / "in.jsonl").write_text('{"id": "q1", "prompt": "a b"}\n')


def _symlink_out(target: Path) -> None:
    (target / "notes.txt").symlink_to("/etc/hostname")


def _list_file(name: str, link: bool = False):
    def edit(config: dict) -> None:
        config["files"][name] = "0" * 64

    return _edit_ckpt(edit, files=_symlink_out if link else None)


PROMPTS = "generate.prompts=[hello]"
PAIRS = "data.pairs={tmp}/pairs.jsonl"
BIG = 50 * 2**20
DEEP = "[" * 100_000 + "]" * 100_000
CASES: dict[str, Case] = {
    # data loss
    "output_dir=. (the current directory)": Case("graft", ["output_dir=."], "is the current directory or holds it", extra={"chdir": True}),
    "output_dir = a project (non-empty, not a checkpoint)": Case("graft", ["output_dir={tmp}/project"], "not a checkpoint this toolkit wrote", setup=_project),
    "output_dir = a checkpoint holding a user's file": Case("graft", ["output_dir={tmp}/ckpt"], "also holds notes.txt", setup=_ckpt_with_notes),
    "output_dir = a file": Case("graft", ["output_dir={tmp}/pairs.jsonl"], "is a file", setup=_write("pairs.jsonl", "{}\n")),
    "train work_dir = output_dir": Case("train", ["work_dir={tmp}/out", "data.pairs={tmp}/pairs.jsonl"], "work_dir=", setup=_write("pairs.jsonl", _pairs())),
    "train work_dir inside output_dir": Case("train", ["work_dir={tmp}/out/w", "data.pairs={tmp}/pairs.jsonl"], "inside output_dir", setup=_write("pairs.jsonl", _pairs())),
    "trainer.checkpoint_dir inside output_dir": Case("train", ["data.pairs={tmp}/pairs.jsonl", "trainer.checkpoint_dir={tmp}/out/l"], "trainer.checkpoint_dir=", setup=_write("pairs.jsonl", _pairs())),
    "run with data.pairs inside output_dir": Case("run", ["data.pairs={tmp}/out/pairs.jsonl"], "data.pairs="),
    "collect resumes a file of another producer": Case("collect", ["data.pairs={tmp}/pairs.jsonl", "collect.num_replies=2", "data.synthetic.train_prompts=2"], "another producer", early=False, setup=_producer_then_other_seed),
    "collect appends to pairs without provenance": Case("collect", ["data.pairs={tmp}/pairs.jsonl", "data.synthetic.train_prompts=2"], "no record of what produced it", early=False, setup=_write("pairs.jsonl", json.dumps({"id": "0", "reward": 0}) + "\n")),
    "generate.output holding other prompts' completions": Case("generate", [PROMPTS, "generate.output={tmp}/o.jsonl", "generate.force_resume=true"], "holds the completion of another prompt", early=False, setup=_write("o.jsonl", json.dumps({"prompt": "x", "completion": "y"}) + "\n")),
    "generate.force_resume on a user's file whose last line has no newline": Case("generate", [PROMPTS, "generate.output={tmp}/o.jsonl", "generate.force_resume=true"], "its last line has no newline", early=False, setup=_write("o.jsonl", '{"prompt": "hello", "completion": "mine"}')),
    # a checkpoint is what it claims
    "flipped bytes in head.safetensors": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "does not match the content hash", early=False, setup=_edit_ckpt(files=_flip)),
    "format_version newer than known": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "newer than this toolkit reads", setup=_edit_ckpt(lambda c: c.update(format_version=9))),
    "augment_config.json without graft.head.level": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "lacks graft.head.level", setup=_edit_ckpt(lambda c: c["graft"]["head"].pop("level"))),
    "augment_config.json without graft.head": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "lacks graft.head", setup=_edit_ckpt(lambda c: c["graft"].pop("head"))),
    "augment_config.json with an unknown key": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "unknown key graft.colour", setup=_edit_ckpt(lambda c: c["graft"].update(colour=1))),
    "augment_config.json not JSON": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "is not valid JSON", setup=_edit_ckpt(files=lambda t: (t / "augment_config.json").write_text("{"))),
    "recipe graft differs from the checkpoint's": Case("generate", [PROMPTS, "model.path={tmp}/ckpt", "graft.head.level=token"], "keeps the graft it was saved with", setup=_edit_ckpt()),
    "checkpoint of another base (same architecture, other weights)": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "weight fingerprint mismatch", early=False, setup=_edit_ckpt(), extra={"other_base": True}),
    # one line, exit 2, before the model loads
    "generate.input with a non-UTF-8 byte": Case("generate", ["generate.input={tmp}/in.jsonl"], "is not UTF-8", setup=_write("in.jsonl", b'{"prompt": "caf\xe9"}\n')),
    "data.prompts with a non-UTF-8 byte": Case("collect", ["data.prompts={tmp}/in.jsonl", "data.pairs={tmp}/p.jsonl"], "is not UTF-8", setup=_write("in.jsonl", b'{"prompt": "\xff"}\n')),
    "model.path holding only config.json": Case("generate", [PROMPTS, "model.path={tmp}/model"], "has config.json but no weights", setup=_copy_tiny(lambda p: p.name == "config.json")),
    "model.path with a truncated model.safetensors": Case("generate", [PROMPTS, "model.path={tmp}/model"], "not a complete safetensors file", setup=_copy_tiny(lambda p: True, _truncate)),
    "missing trainer.ckpt_path": Case("train", ["data.pairs={tmp}/pairs.jsonl", "trainer.ckpt_path={tmp}/none.ckpt"], "trainer.ckpt_path=", setup=_write("pairs.jsonl", _pairs())),
    "corrupt trainer.ckpt_path": Case("train", ["data.pairs={tmp}/pairs.jsonl", "trainer.ckpt_path={tmp}/last.ckpt"], "is corrupted or not a Lightning checkpoint", setup=lambda t, e: (_write("pairs.jsonl", _pairs())(t, e), _write("last.ckpt", b"PK\x03\x04garbage")(t, e))),
    "an empty prompt alone": Case("generate", ["generate.prompts=['']"], "generate.prompts[0] is empty"),
    "an empty prompt inside a batch": Case("generate", ["generate.prompts=[a,'',b]"], "generate.prompts[1] is empty"),
    "an empty prompt in generate.input": Case("generate", ["generate.input={tmp}/in.jsonl"], "in.jsonl:2: the prompt is empty", setup=_write("in.jsonl", '{"prompt": "a"}\n{"prompt": ""}\n')),
    "an empty prompt in data.prompts": Case("collect", ["data.prompts={tmp}/in.jsonl", "data.pairs={tmp}/p.jsonl"], "the prompt is empty", setup=_write("in.jsonl", '{"prompt": ""}\n')),
    "pairs: token id >= vocab": Case("train", ["data.pairs={tmp}/pairs.jsonl"], "chosen_ids holds token id 300, outside 0..299", setup=_write("pairs.jsonl", _pairs(chosen_ids=[300]))),
    "pairs: temperature index >= grid size": Case("train", ["data.pairs={tmp}/pairs.jsonl"], "rejected_tau holds temperature index 6, outside 0..5", setup=_write("pairs.jsonl", _pairs(rejected_tau=[6]))),
    "pairs: a prompt id twice": Case("train", ["data.pairs={tmp}/pairs.jsonl"], "prompt id '0' repeats line 1", setup=_write("pairs.jsonl", _pairs() * 2)),
    "pairs: negative token id": Case("train", ["data.pairs={tmp}/pairs.jsonl"], "prompt_ids holds token id -1", setup=_write("pairs.jsonl", _pairs(prompt_ids=[-1]))),
    "read-only output (generate.output under /proc)": Case("generate", [PROMPTS, "generate.output=/proc/out.jsonl"], "cannot be written"),
    "output under a file": Case("generate", [PROMPTS, "generate.output={tmp}/f/out.jsonl"], "is a file, not a folder", setup=_write("f", "x")),
    "generate.output is a FIFO (would hang)": Case("generate", [PROMPTS, "generate.output={tmp}/fifo"], "is a named pipe (FIFO), not a regular file or folder", setup=lambda t, e: os.mkfifo(t / "fifo")),
    "data.pairs is a FIFO (would hang)": Case("collect", ["data.pairs={tmp}/fifo"], "is a named pipe (FIFO)", setup=lambda t, e: os.mkfifo(t / "fifo")),
    "generate.output is a character device": Case("generate", [PROMPTS, "generate.output=/dev/null"], "is a character device"),
    "full disk for output_dir": Case("graft", [], "is full", extra={"full_disk": True}),
    "sled.evolution_rate=.nan": Case("generate", [PROMPTS, "decoding.sled.evolution_rate=.nan"], "not a finite number"),
    "temperature=.nan": Case("generate", [PROMPTS, "decoding.temperature=.nan"], "not a finite number"),
    "top_p=.nan": Case("generate", [PROMPTS, "decoding.top_p=.nan"], "not a finite number"),
    "head.temperatures=[.inf]": Case("generate", [PROMPTS, "graft.head.temperatures=[.inf]"], "not a finite number"),
    "sled.evolution_lower_bound=.inf": Case("generate", [PROMPTS, "decoding.sled.evolution_lower_bound=.inf"], "not a finite number"),
    "top_n_sigma.n=.nan": Case("generate", [PROMPTS, "decoding.top_n_sigma.n=.nan"], "not a finite number"),
    "dola.relative_top=-.inf": Case("generate", [PROMPTS, "decoding.dola.relative_top=-.inf"], "not a finite number"),
    "repetition_penalty=.inf": Case("generate", [PROMPTS, "decoding.repetition_penalty=.inf"], "not a finite number"),
    "train.beta=.nan": Case("train", ["data.pairs={tmp}/pairs.jsonl", "train.beta=.nan"], "not a finite number", setup=_write("pairs.jsonl", _pairs())),
    "trainer.lr=.inf": Case("train", ["data.pairs={tmp}/pairs.jsonl", "trainer.lr=.inf"], "not a finite number", setup=_write("pairs.jsonl", _pairs())),
    "max_new_tokens past the model's positions": Case("generate", [PROMPTS, "decoding.max_new_tokens=400"], "does not fit the model's 256 positions"),
    "collect.max_new_tokens past the positions": Case("collect", ["data.pairs={tmp}/p.jsonl", "collect.max_new_tokens=300"], "does not fit the model's 256 positions"),
    "a prompt longer than the model's positions": Case("generate", ["generate.prompts=['" + "ab " * 200 + "']"], "passes the model's 256 positions", early=False),
    "NaN logits from a broken model (greedy SLED)": Case("generate", [PROMPTS, "model.path={tmp}/nan-model", "decoding.sled.enabled=true"], "logits at generation step 1 are not finite", early=False, setup=_nan_model),
    "NaN logits from a broken model (sampling)": Case("generate", [PROMPTS, "model.path={tmp}/nan-model", "decoding.do_sample=true", "decoding.seed=0"], "logits at generation step 1 are not finite", early=False, setup=_nan_model),
    # no code runs from a file (each crafted file would create {tmp}/marker)
    "pickle-only base (pytorch_model.bin)": Case("generate", [PROMPTS, "model.path={tmp}/model"], "holds its weights only as a pickle (pytorch_model.bin)", setup=_pickle_base),
    "malicious pickle as trainer.ckpt_path": Case("train", [PAIRS, "trainer.ckpt_path={tmp}/last.ckpt"], "holds objects a safe load refuses (UnpicklingError", setup=lambda t, e: (_write("pairs.jsonl", _pairs())(t, e), _pickle_file("last.ckpt")(t, e))),
    "trainer.ckpt_path naming a best model outside the run": Case("train", [PAIRS, "trainer.ckpt_path={tmp}/last.ckpt", "trainer.checkpoint_dir={tmp}/ckpts"], "names best_model_path=", early=False, setup=_resume_naming),
    # tracebacks that are one line now
    "safetensors header that is a JSON array": Case("generate", [PROMPTS, "model.path={tmp}/model"], "its header is a JSON list, not an object", setup=_copy_tiny(lambda p: True, _safetensors_header([1, 2]))),
    "safetensors header with empty data_offsets": Case("generate", [PROMPTS, "model.path={tmp}/model"], "has data_offsets [], not [start, end]", setup=_copy_tiny(lambda p: True, _safetensors_header({"w": {"dtype": "F32", "shape": [1], "data_offsets": []}}))),
    "weight_fingerprint holding strings": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "weight_fingerprint is malformed", setup=_edit_ckpt(lambda c: c["weight_fingerprint"].update(embed_tokens=["a", "b"]))),
    "data.prompts: prompt_ids holding strings": Case("collect", ["data.prompts={tmp}/in.jsonl", "data.pairs={tmp}/p.jsonl"], "in.jsonl:1: prompt_ids must be a non-empty list of token ids", setup=_write("in.jsonl", '{"prompt": "a", "prompt_ids": ["x"]}\n')),
    "data.prompts: prompt_ids empty": Case("collect", ["data.prompts={tmp}/in.jsonl", "data.pairs={tmp}/p.jsonl"], "in.jsonl:1: prompt_ids must be a non-empty list of token ids", setup=_write("in.jsonl", '{"prompt": "a", "prompt_ids": []}\n')),
    "pairs: prompt_ids holding strings": Case("train", [PAIRS], "pairs.jsonl:1: prompt_ids must be a list of integers", setup=_write("pairs.jsonl", _pairs(prompt_ids=["5"]))),
    "pairs: prompt_ids empty": Case("train", [PAIRS], "pairs.jsonl:1: prompt_ids is empty", setup=_write("pairs.jsonl", _pairs(prompt_ids=[]))),
    "pairs: chosen_tau longer than the ids": Case("train", [PAIRS], "pairs.jsonl:1: chosen_tau holds 3 temperature indices for 1 chosen_ids tokens", setup=_write("pairs.jsonl", _pairs(chosen_tau=[0, 1, 2]))),
    "reward function returning NaN": Case("collect", ["data.prompts={tmp}/in.jsonl", "data.pairs={tmp}/p.jsonl", "collect.num_replies=2", "collect.reward.kind=function", "collect.reward.function=nanreward:score"], "the reward gave nan for a reply to prompt id 'q1'; a reward must be a finite number", early=False, setup=_nan_reward, extra={"syspath": True}),
    "generate.input nested 100000 deep": Case("generate", ["generate.input={tmp}/in.jsonl"], "in.jsonl:1: invalid JSON (arrays and objects nested deeper than 64 levels", setup=_write("in.jsonl", '{"prompt": ' + DEEP + "}\n")),
    "generate.input with a 5000-digit integer": Case("generate", ["generate.input={tmp}/in.jsonl"], "in.jsonl:1: invalid JSON (a number of 5001 characters", setup=_write("in.jsonl", '{"prompt": "a", "n": 1' + "0" * 5000 + "}\n")),
    "pairs nested 100000 deep": Case("train", [PAIRS], "pairs.jsonl:1: invalid JSON (arrays and objects nested deeper", setup=_write("pairs.jsonl", '{"id": "0", "prompt_ids": ' + DEEP + "}\n")),
    "augment_config.json nested 100000 deep": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "is not valid JSON (arrays and objects nested deeper", setup=_edit_ckpt(files=lambda t: (t / "augment_config.json").write_text(DEEP))),
    "generate.output's producer.json nested 100000 deep": Case("generate", [PROMPTS, "generate.output={tmp}/o.jsonl"], "o.jsonl.producer.json is unreadable (arrays and objects nested deeper", early=False, setup=lambda t, e: (_write("o.jsonl", "")(t, e), _write("o.jsonl.producer.json", DEEP)(t, e))),
    "generate.input with a lone surrogate escape": Case("generate", ["generate.input={tmp}/in.jsonl"], "in.jsonl:1: a string holds a lone surrogate", setup=_write("in.jsonl", '{"prompt": "a \\ud800 b"}\n')),
    "an override with a byte that is not UTF-8": Case("generate", ["generate.prompts=[a\udcff]"], "override 'generate.prompts=[a\\udcff]' is not UTF-8 text"),
    "imports=5": Case("generate", [PROMPTS, "imports=5"], "imports must be a list of module names, not 5"),
    "an override of one list item": Case("generate", ["generate.prompts[99999999]=x"], "sets one item of a list; give the whole list, e.g. generate.prompts=[a,b]"),
    # silent success on inconsistent pairs, refused before training
    "pairs: empty reply": Case("train", [PAIRS], "pairs.jsonl:2: rejected_ids is empty", setup=_write("pairs.jsonl", _pairs() + _pairs(id="1", rejected_ids=[], rejected_tau=[]))),
    "pairs: tau list shorter than the ids": Case("train", [PAIRS], "pairs.jsonl:1: rejected_tau holds 1 temperature indices for 2 rejected_ids tokens", setup=_write("pairs.jsonl", _pairs(rejected_ids=[8, 9]))),
    "pairs: prompt longer than the model's positions": Case("train", [PAIRS], "pairs.jsonl:1: prompt and reply hold 301 tokens, past the model's 256 positions", setup=_write("pairs.jsonl", _pairs(prompt_ids=[5] * 300))),
    # a checkpoint's files list reaching outside it, refused before reading
    "checkpoint files list with ../../../../etc/hostname": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "lists the file '../../../../etc/hostname', which is not inside the checkpoint", early=False, setup=_list_file("../../../../etc/hostname")),
    "checkpoint files list with an absolute path": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "lists the file '/etc/hostname', which is not inside", early=False, setup=_list_file("/etc/hostname")),
    "checkpoint files list with a symlink out": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "lists the file 'notes.txt', which is not inside", early=False, setup=_list_file("notes.txt", link=True)),
    "checkpoint files list with a NUL byte in a name": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "files is malformed", setup=_list_file("head\0.safetensors")),
    "checkpoint base with a NUL byte": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "base is malformed", setup=_edit_ckpt(lambda c: c.update(base="self\0"))),
    "checkpoint base hub: naming a local path": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "which is no model reference (hub: takes a Hub id such as org/name)", early=False, setup=lambda t, e: (_copy_tiny(lambda p: True)(t, e), _edit_ckpt(lambda c: c.update(base="hub:./model"))(t, e)), extra={"chdir": True}),
    # hostile sizes
    "tampered graft.head.hidden_size (10**6: 4 TB if allocated)": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "has tensors of the wrong shape (mlp.0.weight [16, 64] where graft.head", early=False, setup=_edit_ckpt(lambda c: c["graft"]["head"].update(hidden_size=10**6)), extra={"no_graft": True}),
    "format_version FORMAT_VERSION + 1": Case("generate", [PROMPTS, "model.path={tmp}/ckpt"], "newer than this toolkit reads", setup=_edit_ckpt(lambda c: c.update(format_version=FORMAT_VERSION + 1))),
    "a 50 MB line in generate.input": Case("generate", ["generate.input={tmp}/in.jsonl"], "in.jsonl:2: the line is longer than 8 MiB", setup=_write("in.jsonl", '{"prompt": "a"}\n{"prompt": "' + "x" * BIG + '"}\n')),
    "a 1.5 M character prompt in data.prompts": Case("collect", ["data.prompts={tmp}/in.jsonl", "data.pairs={tmp}/p.jsonl"], "in.jsonl:1: the prompt has 1500000 characters, more than the 1048576", setup=_write("in.jsonl", '{"prompt": "' + "y" * 1_500_000 + '"}\n')),
    # paths vs Hub ids
    "model.path=checkpoints/tiny before it exists": Case("generate", [PROMPTS, "model.path=checkpoints/tiny"], "model.path='checkpoints/tiny' does not exist (written as a local path, so not looked up on the Hub)", extra={"chdir": True}),
}


def _snapshot(tmp: Path) -> dict[str, bytes]:
    """Every file's bytes under `tmp` (links not followed)."""
    return {str(p): p.read_bytes() for p in tmp.rglob("*") if p.is_file() and not p.is_symlink()}


def run_case(case: Case, tmp: Path, env: dict, capsys, monkeypatch) -> tuple[int, str]:
    """Run one case through `main`; returns (exit code, stderr)."""
    recipe = tmp / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp}/out\nwork_dir: {tmp}/work\nmodel:\n  path: {env['tiny']}\n"
                      f"{GRAFT}decoding:\n  max_new_tokens: 4\n")
    if case.setup:
        case.setup(tmp, env)
    if case.extra.get("chdir"):
        monkeypatch.chdir(tmp)
    if case.extra.get("other_base"):
        path = tmp / "ckpt" / "augment_config.json"
        config = json.loads(path.read_text())
        config["base"] = str(env["other"])
        path.write_text(json.dumps(config))
    if case.extra.get("full_disk"):
        class Full:
            f_bavail, f_frsize = 0, 4096

        monkeypatch.setattr("toolkit.io.files.os.statvfs", lambda path: Full())
    if case.extra.get("no_graft"):
        recipe.write_text(recipe.read_text().replace(GRAFT, ""))
    if case.extra.get("syspath"):
        monkeypatch.syspath_prepend(str(tmp))
    overrides = [o.format(tmp=tmp) for o in case.overrides]
    before = _snapshot(tmp)
    capsys.readouterr()
    code = main([case.command, str(recipe), *overrides])
    after = _snapshot(tmp)
    assert not (tmp / "marker").exists(), "code ran from a crafted file"
    assert {k: v for k, v in after.items() if k in before} == before, "a user's byte changed"
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def env(tiny_model_dir, tmp_path_factory):
    from _generation import graft

    tiny = tiny_model_dir("llama")
    ckpt = graft(tiny).save_pretrained(tmp_path_factory.mktemp("bad") / "ckpt")
    return {"tiny": tiny, "ckpt": ckpt, "other": tiny_model_dir("llama", seed=1)}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_2(name, env, tmp_path, capsys, monkeypatch):
    case = CASES[name]
    if case.early:
        def refuse(*args, **kwargs):
            raise AssertionError("a model was loaded")

        monkeypatch.setattr("toolkit.recipes.models._load_local", refuse)
    code, err = run_case(case, tmp_path, env, capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]) and "Traceback" not in err, err
    assert case.expected in lines[0], lines[0]


def test_top_n_sigma_n_at_most_zero_is_stated(env, tmp_path, capsys, monkeypatch):
    case = Case("generate", [PROMPTS, "decoding.top_n_sigma.enabled=true", "decoding.top_n_sigma.n=0",
                             "decoding.do_sample=true"], "")
    code, err = run_case(case, tmp_path, env, capsys, monkeypatch)
    assert code == 0
    assert "note: decoding.top_n_sigma.n=0 <= 0 switches top-n-sigma off (as in llama.cpp)" in err


def test_load_model_refuses_a_graft_the_checkpoint_does_not_have(env):
    from toolkit.core.errors import ConfigError
    from toolkit.methods.options import GraftConfig, HeadConfig
    from toolkit.recipes.models import load_model
    from toolkit.recipes.schema import ModelConfig

    config = ModelConfig(path=str(env["ckpt"]))
    assert load_model(config, GraftConfig()).graft_config.head.hidden_size == 16
    with pytest.raises(ConfigError, match="graft.head: recipe .*'level': 'token'"):
        load_model(config, GraftConfig(head=HeadConfig(hidden_size=16, level="token")))
