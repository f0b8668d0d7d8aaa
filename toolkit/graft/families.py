"""One table, as data, of where each supported architecture keeps the parts the tap needs.

Every family is resolved the same way: `model.get_decoder()` gives the decoder, the table names
its layer list and final norm, `model.get_output_embeddings()` gives lm_head, and the table
names the text-config attribute holding the final-logit soft-cap (if any). Embedding scales
(Gemma's sqrt(d)) need no entry: they are applied before decoder layer 0, where the tap reads
`hidden_states[0]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from toolkit.errors import UnsupportedArchitectureError


class Family(NamedTuple):
    """Attribute names, relative to `get_decoder()` and the text config."""

    layers: str = "layers"
    norm: str = "norm"
    softcap: str | None = None


FAMILIES: dict[str, Family] = {
    "llama": Family(),  # Llama 1-3
    "mistral": Family(),
    "qwen2": Family(),
    "gemma": Family(),
    "gemma2": Family(softcap="final_logit_softcapping"),
    "gemma3_text": Family(softcap="final_logit_softcapping"),  # Gemma 3 text (None: no cap)
    "mixtral": Family(),
}

SUPPORTED: tuple[str, ...] = tuple(FAMILIES)


@dataclass(frozen=True)
class ModelParts:
    """The parts of a causal LM that the early-exit tap hooks and projects through."""

    decoder: nn.Module
    layers: nn.ModuleList
    norm: nn.Module
    lm_head: nn.Module
    softcap: float | None
    tied: bool
    num_layers: int
    model_type: str


def family_of(model: nn.Module) -> tuple[str, Family]:
    """The model type of `model`'s text config and its table entry; raise if unsupported."""
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has no `config`; pass a Hugging Face causal LM "
            f"(supported model types: {', '.join(SUPPORTED)})"
        )
    text_config = config.get_text_config()
    model_type = getattr(text_config, "model_type", None) or config.model_type
    if model_type not in FAMILIES:
        raise UnsupportedArchitectureError(
            f"model type {model_type!r} ({type(model).__name__}) is not supported; "
            f"supported model types: {', '.join(SUPPORTED)}"
        )
    return model_type, FAMILIES[model_type]


def resolve(model: nn.Module) -> ModelParts:
    """Find decoder, layers, final norm, lm_head, soft-cap and tying of a supported model."""
    model_type, family = family_of(model)
    text_config = model.config.get_text_config()
    decoder = model.get_decoder()
    layers = getattr(decoder, family.layers)
    norm = getattr(decoder, family.norm)
    lm_head = model.get_output_embeddings()
    if lm_head is None:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} ({model_type}) has no output embeddings (lm_head); "
            "load it with AutoModelForCausalLM"
        )
    softcap = getattr(text_config, family.softcap, None) if family.softcap else None
    return ModelParts(
        decoder=decoder,
        layers=layers,
        norm=norm,
        lm_head=lm_head,
        softcap=float(softcap) if softcap else None,
        tied=_is_tied(model, text_config, lm_head),
        num_layers=len(layers),
        model_type=model_type,
    )


def _is_tied(model: nn.Module, text_config, lm_head: nn.Module) -> bool:
    if getattr(text_config, "tie_word_embeddings", False):
        return True
    embeddings = model.get_input_embeddings()
    if embeddings is None:
        return False
    return lm_head.weight.data_ptr() == embeddings.weight.data_ptr()
