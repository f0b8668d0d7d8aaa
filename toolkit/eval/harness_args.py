"""The lm-eval backend's model_args, checked as strictly as stock `hf` checks them.

Stock `hf` hands every key it does not know to `from_pretrained`, which refuses it. The
`surgery` backend passes HFLM a model it loaded itself, so HFLM would ignore such keys (and
`dtype` with them) in silence. Here every key is sorted before anything loads: ours, a
method's flag or option, an HFLM key that applies to a loaded model (passed on), `dtype`
(applied when the model loads), or an HFLM key that only applies when HFLM loads the model
itself (refused, naming the key). Anything else is refused with the valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any

import torch
from lm_eval.models.huggingface import HFLM

from toolkit import methods
from toolkit.core.errors import ConfigError

OURS = ("pretrained", "preset", "shared_prefix", "imports")
# HFLM keys that need HFLM to load the model from a name; the backend loads it itself.
LOADING_ONLY = ("revision", "subfolder", "tokenizer", "trust_remote_code", "use_fast_tokenizer",
                "parallelize", "max_memory_per_gpu", "max_cpu_memory", "offload_folder",
                "tp_plan", "peft", "delta", "autogptq", "gptqmodel", "gguf_file")
FLOATING = ("bfloat16", "float16", "float32", "float64")


def hflm_keys() -> tuple[str, ...]:
    """HFLM's named constructor arguments that apply to a model passed in, `dtype` aside."""
    names = [p.name for p in inspect.signature(HFLM.__init__).parameters.values()
             if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("self", "pretrained")]
    return tuple(n for n in names if n not in LOADING_ONLY and n != "dtype")


def dtype_of(value: Any) -> Any:
    """lm-eval's `dtype` model_arg as a torch dtype ("auto" stays "auto")."""
    if value == "auto" or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and value in FLOATING:
        return getattr(torch, value)
    raise ConfigError(f"model_args dtype={value!r} is not a dtype; allowed: auto, "
                      f"{', '.join(FLOATING)}")


def import_plugins(value: Any) -> None:
    """`imports=MODULE` (several joined by `+`): modules that register decoding methods, as a
    recipe's `imports:` does, imported before the methods are resolved."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"imports={value!r} in model_args must name a module (several "
                          "joined by +), e.g. imports=my_package.my_method")
    for name in value.split("+"):
        methods.import_module(name)


def _method_keys(logits_methods: tuple[str, ...]) -> list[str]:
    keys = []
    for name in logits_methods:
        fields = dataclasses.fields(methods.get(name).options)
        keys += [name] + [f"{name}_{f.name}" for f in fields if f.name != "enabled"]
    return keys


def check(given: dict[str, Any], logits_methods: tuple[str, ...]) -> None:
    """Refuse, in one line, a key no part of the backend takes, or one that only applies when
    HFLM loads the model itself."""
    prefixes = tuple(f"{name}_" for name in logits_methods)
    for key, value in given.items():
        if key in logits_methods or key.startswith(prefixes):
            continue  # a method's (DeLTa's `delta` is not HFLM's delta weights here)
        if key in LOADING_ONLY and not (key == "trust_remote_code" and not value):
            raise ConfigError(f"model_args {key}={value} is not supported by the surgery "
                              "backend: it loads the model itself (from pretrained=, on one "
                              "device, no remote code); leave it out")
    known = (*OURS, "dtype", *hflm_keys())
    unknown = [k for k in given if k not in known and k not in logits_methods
               and not k.startswith(prefixes) and k not in LOADING_ONLY]
    if unknown:
        valid = [*OURS, *_method_keys(logits_methods), "dtype", *hflm_keys()]
        near = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise ConfigError(f"unknown model_args key {unknown[0]!r}{hint} for --model surgery; "
                          f"valid: {', '.join(valid)}")


def as_given(given: dict[str, Any], resolved: str) -> str:
    """Every arg as given, in order, then the resolved method options not given (so the
    line reruns the same evaluation)."""
    parts = [f"{k}={v}" for k, v in given.items()]
    keys = set(given)
    parts += [p for p in resolved.split(",") if p and p.split("=", 1)[0] not in keys]
    return ",".join(parts)
