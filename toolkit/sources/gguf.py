"""GGUF files (llama.cpp's format) as ordinary transformers models.

transformers' own GGUF loader (`from_pretrained(dir, gguf_file=...)`, with the `gguf` package)
dequantizes the tensors into a normal `PreTrainedModel`. It still carries the quantizer it was
loaded through, which makes `save_pretrained` refuse it; the weights are plain float tensors by
then, so `load_gguf` drops the quantizer and the `quantization_config` entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.core.errors import CheckpointError, ConfigError
from toolkit.sources.gguf_header import GGUFHeaderError, check_header


def check_gguf(directory: str | Path, gguf_file: str) -> Path:
    """The GGUF file's path; ConfigError naming the fix when it is not there, CheckpointError
    when its header and metadata are damaged or past the caps of `gguf_header`."""
    path = Path(directory) / gguf_file
    if Path(gguf_file).name != gguf_file:
        raise ConfigError(
            f"model.gguf_file={gguf_file!r} must be a file name inside model.path, e.g. "
            "model.path=/models/dir model.gguf_file=model.Q4_K_M.gguf"
        )
    if not path.is_file():
        raise ConfigError(
            f"model.gguf_file={gguf_file!r}: no such file in {directory}; give the name of a "
            ".gguf file that lies in model.path"
        )
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ConfigError(
            "reading GGUF files needs the `gguf` package: python3 -m pip install gguf"
        ) from None
    try:
        check_header(path)
    except (OSError, GGUFHeaderError) as err:
        raise CheckpointError(
            f"{path} cannot be read as a GGUF file: {err}; download it again, or give "
            "model.gguf_file a complete GGUF model"
        ) from err
    return path


def load_gguf(directory: str | Path, gguf_file: str, dtype: Any = None,
              device_map: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) dequantized from `directory/gguf_file`, ready for save_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM

    from toolkit.sources.quiet import quiet_loading
    from toolkit.sources.tokenizer_files import load_tokenizer

    check_gguf(directory, gguf_file)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file, "dtype": dtype or torch.float32}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        tokenizer = load_tokenizer(directory, gguf_file=gguf_file)
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(str(directory), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"cannot read {Path(directory) / gguf_file} as a GGUF causal LM ({err}); check that "
            "the file is complete and its architecture is supported by transformers"
        ) from err
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model.eval(), tokenizer
