"""One request's decoding in vLLM: which of the toolkit's stages run, with which options, read
from the toolkit's one decoding plan (`toolkit.methods.plan`).

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

import dataclasses
from dataclasses import dataclass
from typing import Any

from toolkit.core.errors import ConfigError
from toolkit.graft.layers import candidate_layers
from toolkit.methods.options import DecodingConfig
from toolkit.methods.plan import plan
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
    """The plan of a request with `extra_args` on the served checkpoint (None: another model):
    the toolkit's own plan of its options (`toolkit.methods.plan`), its filters included, since
    vLLM runs them only for the requests that sample.

    Raises:
        ConfigError: a bad key or value, or a method the served model cannot run.
    """
    base = served.decoding if served is not None else DecodingConfig()
    steps = plan(dataclasses.replace(request_decoding(base, extra), do_sample=True))
    head = steps.temperature.head if steps.temperature is not None else None
    for step in (steps.logits, head, *steps.filters):
        if step is not None:
            _check(step.method, step.options, served)
    logits = None
    if steps.logits is not None:
        logits = Step(steps.logits.method, steps.logits.options, _layers(steps.logits, served))
    adaptive = head.options if head is not None and head.method.logits is None else None
    temperature = (Step(head.method, head.options),) if head is not None and adaptive is None \
        else ()
    return RequestPlan(logits, adaptive, temperature,
                       tuple(Step(f.method, f.options) for f in steps.filters))


def _check(method, options, served: state.Served | None) -> None:
    if method.tap != "none" and served is None:
        needs = "the early-exit tap" if method.tap == "layers" else "the adaptive head"
        raise ConfigError(
            f"{method.name} needs {needs} of a model-surgery checkpoint; this server's model is "
            "not one (serve a folder written by AugmentedModel.save_pretrained)")
    if method.check is not None and served is not None:
        method.check(options, served.vocab_size)


def _layers(step, served: state.Served) -> tuple[int, ...]:
    """The method's candidate layers: its own (`layers_of`), else all the server captures."""
    if step.layers is None:
        return served.layers
    key = f"{step.method.name}_{step.method.layers_key}"
    wanted = candidate_layers(step.layers, served.num_layers, served.tied, key=key)
    missing = [layer for layer in wanted if layer not in served.layers]
    if missing:
        raise ConfigError(
            f"vllm_xargs {key}={step.layers!r} asks for layer(s) {missing}, which this server "
            f"does not capture (graft.layers gives {list(served.layers)})")
    return tuple(wanted)
