"""`cli.py serve RECIPE`: vLLM's OpenAI-compatible server on the recipe's model, with the
recipe's `serve` section as its arguments (docs/serving.md). The same server as vLLM's own
command: this process becomes it (exec), so signals and exit codes are vLLM's."""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from pathlib import Path

from toolkit.core.errors import ConfigError
from toolkit.serving.server import command

INSTALL = "python3 -m toolkit.serving.install"


def check_serve(recipe) -> None:
    """vLLM is importable here, and the model is a local folder (a checkpoint or a model)."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"cli.py serve needs vLLM in this environment; add it with {INSTALL} "
                          "(docs/serving.md)")
    model = recipe.model
    if not (model.path or model.preset):
        raise ConfigError("cli.py serve serves model.path (a checkpoint written by "
                          "save_pretrained, or a model folder) or model.preset; set one")
    if model.path and not Path(model.path).is_dir():
        raise ConfigError(f"model.path={model.path!r} is not a directory; point it at a "
                          "checkpoint folder, e.g. checkpoints/quickstart")


def server_args(serve) -> list[str]:
    """The recipe's `serve` section as vLLM's command-line options."""
    args = ["--dtype", serve.dtype, "--tensor-parallel-size", str(serve.tensor_parallel_size)]
    if serve.max_model_len is not None:
        args += ["--max-model-len", str(serve.max_model_len)]
    if serve.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(serve.gpu_memory_utilization)]
    if serve.enforce_eager:
        args.append("--enforce-eager")
    return [*args, *serve.args]


def cmd_serve(recipe) -> None:
    model = recipe.model.path
    if model is None:
        from toolkit.sources.presets import prepare_preset

        model = str(prepare_preset(recipe.model.preset,
                                   say=lambda line: print(line, file=sys.stderr)))
    serve = recipe.serve
    argv = command(model, host=serve.host, port=serve.port, extra=server_args(serve))
    print(f"serving {model} on http://{serve.host}:{serve.port}/v1: {shlex.join(argv)}",
          file=sys.stderr, flush=True)
    os.execv(argv[0], argv)
