"""One JSONL line ends only at a newline: every code point `str.splitlines` breaks at survives a
write and a read (and a resumed run), valid JSON holding them raw is read as one line, and a
finished `generate` run again does nothing."""

from __future__ import annotations

import hashlib
import json
import sys

from toolkit.cli.main import main
from toolkit.io import jsonl

BREAKERS = [chr(c) for c in range(sys.maxunicode + 1) if len(f"a{chr(c)}b".splitlines()) == 2]


def test_line_breaks_are_every_code_point_splitlines_breaks_at():
    assert sorted(jsonl.LINE_BREAKS) == BREAKERS
    assert [f"U+{ord(c):04X}" for c in BREAKERS] == [
        "U+000A", "U+000B", "U+000C", "U+000D", "U+001C", "U+001D", "U+001E", "U+0085",
        "U+2028", "U+2029"]


def test_every_line_break_round_trips_as_one_line(tmp_path):
    path = tmp_path / "out.jsonl"
    records = [{"id": i, "prompt": f"a{c}b\u00e9", "tokens": [c, c + c]}
               for i, c in enumerate(BREAKERS)]
    with open(path, "ab") as fh:
        for record in records:
            jsonl.append_record(fh, record)
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) == len(records)  # any reader, even splitlines, sees one per line
    assert "\u00e9" in text  # other text stays readable UTF-8
    assert jsonl.read_records(path) == records
    assert [obj for _, obj in jsonl.read_objects(path)] == records


def test_raw_line_breaks_inside_json_strings_are_read(tmp_path):
    """Valid JSON may hold U+0085, U+2028 and U+2029 raw in a string; a CRLF file reads too."""
    path = tmp_path / "prompts.jsonl"
    raw = ['{"prompt": "one\u0085two"}', '{"prompt": "x\u2028y\u2029z"}', '{"prompt": "crlf"}']
    path.write_bytes(("\n".join(raw[:2]) + "\n" + raw[2] + "\r\n").encode("utf-8"))
    got = jsonl.read_prompts(path)
    assert got == [(1, {"prompt": "one\u0085two"}), (2, {"prompt": "x\u2028y\u2029z"}),
                   (3, {"prompt": "crlf"})]
    assert jsonl.read_records(path) == [r for _, r in got]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generate_with_line_breaks_resumes_and_a_finished_run_does_nothing(
        capsys, tmp_path, tiny_llama_dir):
    """4 prompts, batch 2 (a multiple): the rerun of a finished run once raised IndexError."""
    recipe = tmp_path / "g.yaml"
    recipe.write_text(f"model:\n  path: {tiny_llama_dir}\ndecoding:\n  max_new_tokens: 3\n"
                      "generate:\n  batch_size: 2\n")
    source = tmp_path / "in.jsonl"
    prompts = [f"a{c}b" for c in ("\u2028", "\u0085", "\u2029", "\x1c")]
    source.write_text("".join(jsonl.dumps_line({"prompt": p}) for p in prompts), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["generate", str(recipe), f"generate.input={source}", f"generate.output={out}"]
    assert main(args) == 0
    rows = jsonl.read_records(out)
    assert [r["prompt"] for r in rows] == prompts and len(out.read_text().splitlines()) == 4
    before = _sha(out)
    capsys.readouterr()
    assert main(args) == 0
    assert "wrote 0 completions" in capsys.readouterr().out
    assert _sha(out) == before
    assert json.loads(out.read_text().split("\n")[1])["prompt"] == prompts[1]
