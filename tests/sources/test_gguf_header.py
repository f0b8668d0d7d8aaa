"""Hostile GGUF files, built by hand with struct, are refused by the bounded header walk
(`toolkit.sources.gguf_header`) with one line, fast and in little memory, before the `gguf`
package reads them; a file the `gguf` package writes passes the walk."""

from __future__ import annotations

import struct
import time
import tracemalloc

import numpy as np
import pytest

from toolkit.cli.main import main
from toolkit.core.errors import CheckpointError
from toolkit.sources.gguf import check_gguf, load_gguf
from toolkit.sources.gguf_header import check_header

STRING, ARRAY, UINT32 = 8, 9, 4


def _string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _gguf(keys: int, body: bytes = b"", tensors: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, tensors, keys) + body


def _string_array(name: bytes, count: int, strings: bytes) -> bytes:
    return _string(name) + struct.pack("<IIQ", ARRAY, STRING, count) + strings


def _written(path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list(["<s>", "a", "b"])
    writer.add_array("test.nested", [[1, 2], [3]])
    writer.add_string("tokenizer.chat_template", "{{ messages }}")
    writer.add_tensor("w", np.ones((2, 3), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _refusal(tmp_path, data: bytes) -> str:
    (tmp_path / "m.gguf").write_bytes(data)
    with pytest.raises(CheckpointError) as caught:
        check_gguf(tmp_path, "m.gguf")
    return str(caught.value)


def _line(tmp_path, what: str) -> str:
    return (f"{tmp_path / 'm.gguf'} cannot be read as a GGUF file: {what}; download it again, "
            "or give model.gguf_file a complete GGUF model")


def test_a_file_the_gguf_package_writes_passes(tmp_path):
    _written(tmp_path / "ok.gguf")
    check_header(tmp_path / "ok.gguf")
    assert check_gguf(tmp_path, "ok.gguf") == tmp_path / "ok.gguf"


def test_an_absurd_key_count_is_one_line(tmp_path):
    message = _refusal(tmp_path, _gguf(2**63))
    assert message == _line(tmp_path, f"it claims {2**63} metadata keys, more than the 10000 a "
                                      "GGUF file may have")
    message = _refusal(tmp_path, _gguf(5, _string(b"general.name")))
    assert message == _line(tmp_path, "metadata key 'general.name' needs 4 bytes, but only 0 are "
                                      "left in the file (it is cut off or damaged)")


def test_three_million_strings_are_refused_fast_and_small(tmp_path):
    """24 MB of empty strings, as in the report (5.2 GB and 116 s before the refusal)."""
    data = _gguf(1, _string_array(b"tokenizer.ggml.tokens", 3_000_000, bytes(8 * 3_000_000)))
    started = time.perf_counter()
    tracemalloc.start()
    try:
        message = _refusal(tmp_path, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 2**20, peak
    assert message == _line(tmp_path, "metadata key 'tokenizer.ggml.tokens' is an array of "
                                      "3000000 values, more than the 1000000 an array may have")


@pytest.mark.parametrize("body, what", [
    (_string_array(b"t", 1000, bytes(80)), "metadata key 't' claims 1000 values, more than the "
                                           "80 bytes left in the file can hold"),
    (_string(b"s") + struct.pack("<IQ", STRING, 2**40), "metadata key 's' is 1099511627776 bytes "
                                                        "long, more than the 67108864 a string may have"),
    (_string(b"u") + struct.pack("<IIQ", ARRAY, UINT32, 10), "metadata key 'u' needs 40 bytes, "
                                                             "but only 0 are left in the file (it is cut off or damaged)"),
    (_string(b"x") + struct.pack("<I", 77), "metadata key 'x' has value type 77, which GGUF does "
                                            "not define"),
])
def test_lengths_past_the_file_are_one_line(tmp_path, body, what):
    assert _refusal(tmp_path, _gguf(1, body)) == _line(tmp_path, what)


def test_tensor_count_and_magic(tmp_path):
    assert _refusal(tmp_path, _gguf(0, tensors=10**9)) == _line(
        tmp_path, "it claims 1000000000 tensors, more than the file can describe")
    assert _refusal(tmp_path, b"GGML" + bytes(40)) == _line(
        tmp_path, "it does not start with the GGUF magic bytes")


def test_load_gguf_refuses_before_the_gguf_package_reads(tmp_path, monkeypatch):
    import gguf

    def refuse(*args, **kwargs):
        raise AssertionError("the gguf package read the file")

    monkeypatch.setattr(gguf, "GGUFReader", refuse)
    (tmp_path / "m.gguf").write_bytes(_gguf(2**40))
    with pytest.raises(CheckpointError, match="metadata keys, more than the 10000"):
        load_gguf(tmp_path, "m.gguf")


def test_cli_gives_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "m.gguf").write_bytes(_gguf(2**40))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp_path}/out\nmodel:\n  path: {tmp_path}\n"
                      "  gguf_file: m.gguf\n")
    code = main(["generate", str(recipe), "generate.prompts=[hello]"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: {_line(tmp_path, f'it claims {2**40} metadata keys, more than the 10000 a GGUF file may have')}"
    ]
