"""One request's decoding in vLLM: which of the toolkit's stages run, with which options.

vLLM's sampler already applies the request's repetition penalty, temperature, top-k and top-p
in our composition order; the toolkit adds the rest around them:

1. the logits-stage method (SLED, DoLa, contrastive, ...) on the raw logits, before vLLM's
   penalties (`toolkit.serving.processors.LogitsStage`, not argmax-invariant);
2. after vLLM's temperature (leave the request's at 1 when the head or another
   temperature-stage method sets it), the temperature stage (the adaptive head, or a method with
   its own function), then the filter-stage methods (top-n-sigma, typical, ...), then vLLM's
   top-k and top-p (`SamplingStage`, argmax-invariant: vLLM runs it only for sampling rows).

`request_plan` also refuses, with one line, what the served model cannot run: a method that
reads the early-exit tap or the head on a model that is not a model-surgery checkpoint, layers
the server does not capture, options the vocabulary does not allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.core.options import DecodingConfig
from toolkit.graft.layers import candidate_layers
from toolkit.serving import state
from toolkit.serving.requests import request_decoding


@dataclass(frozen=True)
class Step:
    """A method of the registry with its options (and, for the logits stage, its tap layers)."""

    method: Any
    options: Any
    layers: tuple[int, ...] = ()

    @property
    def key(self) -> tuple:
        """Requests whose steps share this key run as one batch."""
        return self.method.name, repr(self.options), self.layers


@dataclass(frozen=True)
class RequestPlan:
    logits: Step | None
    adaptive: Any  # the adaptive head's options, or None
    temperature: tuple[Step, ...]
    filters: tuple[Step, ...]


def request_plan(extra: Any, served: state.Served | None) -> RequestPlan:
    """The plan of a request with `extra_args` on the served checkpoint (None: another model).

    Raises:
        ConfigError: a bad key or value, or a method the served model cannot run.
    """
    base = served.decoding if served is not None else DecodingConfig()
    options = request_decoding(base, extra)
    logits, adaptive, temperature, filters = None, None, [], []
    for method in methods.active(options):
        method_options = options.method(method.name)
        _check(method, method_options, served)
        if method.stage == "logits":
            logits = Step(method, method_options, _layers(method, method_options, served))
        elif method.stage == "temperature" and method.logits is None:
            adaptive = method_options
        elif method.stage == "temperature":
            temperature.append(Step(method, method_options))
        else:
            filters.append(Step(method, method_options))
    return RequestPlan(logits, adaptive, tuple(temperature), tuple(filters))


def _check(method, options, served: state.Served | None) -> None:
    if method.tap != "none" and served is None:
        needs = "the early-exit tap" if method.tap == "layers" else "the adaptive head"
        raise ConfigError(
            f"{method.name} needs {needs} of a model-surgery checkpoint; this server's model is "
            "not one (serve a folder written by AugmentedModel.save_pretrained)")
    if method.check is not None and served is not None:
        method.check(options, served.vocab_size)


def _layers(method, options, served: state.Served) -> tuple[int, ...]:
    """The method's candidate layers: its own `layers` option, else all the server captures."""
    spec = getattr(options, method.layers_key) if method.layers_key else None
    if spec is None:
        return served.layers
    wanted = candidate_layers(spec, served.num_layers, served.tied,
                              key=f"{method.name}_{method.layers_key}")
    missing = [layer for layer in wanted if layer not in served.layers]
    if missing:
        raise ConfigError(
            f"vllm_xargs {method.name}_{method.layers_key}={spec!r} asks for layer(s) {missing}, "
            f"which this server does not capture (graft.layers gives {list(served.layers)})")
    return tuple(wanted)
