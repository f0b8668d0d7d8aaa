"""Where a causal LM keeps the parts the tap needs, found by discovery rather than a closed table.

`model_parts(model)` finds the decoder through `model.get_decoder()`, its layer list and final norm
by a short list of attribute names, and the output head through `model.get_output_embeddings()`.
What the model does between its last hidden state and its logits is read from the text config
(`LOGIT_SCALES`, `SOFT_CAPS`); `EXCEPTIONS` holds the model types that spell one of those keys
differently, `REFUSED` the ones whose logits discovery cannot reproduce, and
`EARLY_EXIT_NORM_DEFAULTS` the ones whose early layers go through the final norm by default:
the only per-model-type tables of the toolkit. Embedding scales (Gemma's
sqrt(d)) need nothing: they are applied before decoder layer 0, where the tap reads
`hidden_states[0]`. Whatever discovery finds is checked on a probe at graft time
(`toolkit.graft.probe`), so a model computing its logits otherwise is refused, never decoded wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from toolkit.core.errors import UnsupportedArchitectureError

LAYER_NAMES = ("layers", "h", "blocks", "layer", "block")
# LFM2 names its final norm embedding_norm. Post-norm models (GPT-1, XLNet) have none: Identity.
NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f", "final_norm",
              "out_norm", "ln_out", "norm_out", "embedding_norm")

# Config keys of a scalar applied to the logits, and how: logits * v or logits / v (a scale
# applied to the hidden state right before a bias-free lm_head is the same thing).
LOGIT_SCALES = {
    "logit_scale": "multiply",  # Cohere, Cohere 2
    "logits_scaling": "divide",  # Granite family; MiniCPM3 (hidden_size / dim_model_base)
    "lm_head_multiplier": "multiply",  # Falcon-H1 (muP)
    "logits_mup_width_multiplier": "divide",  # Inkling (muP)
}
# Config keys of a final soft-cap tanh(logits / c) * c.
SOFT_CAPS = ("final_logit_softcapping", "logits_soft_cap", "output_logit_soft_cap")
# Model types that read one of those keys otherwise (None: the key is not applied).
EXCEPTIONS: dict[str, dict[str, str | None]] = {
    "hyperclovax": {"logits_scaling": "multiply"},
    "mpt": {"logit_scale": None},
}
# Model types whose logits are computed in a way discovery cannot reproduce.
# (Each is pinned by the coverage test over transformers, tests/graft/test_architectures.py.)
REFUSED: dict[str, str] = {
    "inkling_text": "its logits drop the padded vocabulary rows after lm_head",
    "deepseek_v4": "its decoder layers carry several residual streams (hyper-connections), "
                   "not one hidden state the tap can read",
    "hy_v4": "its decoder layers carry several residual streams (hyper-connections), not one "
             "hidden state the tap can read",
    "gemma3n_text": "its decoder layers carry AltUp's stacked predictions, not one hidden state "
                    "the tap can read",
    "xlnet": "its layers run sequence-first (tokens, batch, hidden) with two attention streams",
    "modernbert-decoder": "its head is a prediction MLP (dense, activation, norm) before the "
                          "output embeddings, not one linear map",
}
# Model types whose early layers go through the final norm unless the user says otherwise
# (`early_exit_norm=None`). Measured, docs/methods.md section 1: Gemma 3's residual stream grows
# to norm ~33,000; without the norm its early logits reach ~33,000 and are dominated by a few
# tokens ("..") that no final answer shares.
EARLY_EXIT_NORM_DEFAULTS: dict[str, bool] = {"gemma3_text": True}


@dataclass(frozen=True)
class ModelParts:
    """The parts of a causal LM that the early-exit tap hooks and projects through.

    logits = softcap(lm_head(final_hidden) * logit_scale); softcap is None for none.
    """

    decoder: nn.Module
    layers: nn.ModuleList
    norm: nn.Module
    lm_head: nn.Module
    softcap: float | None
    tied: bool
    num_layers: int
    model_type: str
    logit_scale: float = 1.0


def model_type_of(model: nn.Module) -> str:
    """The model type of `model`'s text config; raise if `model` is no Hugging Face model."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "get_text_config"):
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has no `config`; pass a Hugging Face causal LM "
            "(AutoModelForCausalLM)"
        )
    return getattr(config.get_text_config(), "model_type", None) or config.model_type


def refusal(model_type: str) -> str | None:
    """Why `model_type` cannot be grafted, or None when discovery is tried on it."""
    return REFUSED.get(model_type)


def default_early_exit_norm(model_type: str) -> bool:
    """Whether a model of `model_type` applies the final norm to early layers by default."""
    return EARLY_EXIT_NORM_DEFAULTS.get(model_type, False)


def model_parts(model: nn.Module) -> ModelParts:
    """Find decoder, layers, final norm, lm_head, logit transforms and tying of `model`."""
    model_type = model_type_of(model)
    where = f"model type {model_type!r} ({type(model).__name__})"
    if model_type in REFUSED:
        raise UnsupportedArchitectureError(f"{where} is not supported: {REFUSED[model_type]}")
    text_config = model.config.get_text_config()
    decoder, layers = _decoder(model)
    norm = _first(decoder, NORM_NAMES, nn.Module) or nn.Identity()
    lm_head = model.get_output_embeddings()
    if layers is None:
        raise UnsupportedArchitectureError(
            f"{where}: {type(decoder).__name__} has no decoder layer list (looked for "
            f"{', '.join(LAYER_NAMES)}), so the tap has no layers to read")
    if lm_head is None:
        raise UnsupportedArchitectureError(
            f"{where} has no output embeddings (lm_head); load it with AutoModelForCausalLM")
    scale, softcap = logit_transforms(model_type, text_config)
    return ModelParts(decoder=decoder, layers=layers, norm=norm, lm_head=lm_head,
                      softcap=softcap, tied=_is_tied(model, text_config, lm_head),
                      num_layers=len(layers), model_type=model_type, logit_scale=scale)


def logit_transforms(model_type: str, text_config) -> tuple[float, float | None]:
    """(scale, softcap) the model applies to lm_head's output, read from its text config."""
    rules = {**LOGIT_SCALES, **EXCEPTIONS.get(model_type, {})}
    scale = 1.0
    for key, how in rules.items():
        value = getattr(text_config, key, None) if how in ("multiply", "divide") else None
        if value is not None:
            scale = scale * float(value) if how == "multiply" else scale / float(value)
    caps = [getattr(text_config, key, None) for key in SOFT_CAPS
            if EXCEPTIONS.get(model_type, {}).get(key, key) is not None]
    softcap = next((float(c) for c in caps if c), None)
    return scale, softcap


def _decoder(model: nn.Module) -> tuple[nn.Module, nn.ModuleList | None]:
    """The decoder holding the layer list: `get_decoder()`, else the base model (some
    get_decoder() return the model itself or a same-named head)."""
    candidates = [model.get_decoder() if hasattr(model, "get_decoder") else None,
                  getattr(model, getattr(model, "base_model_prefix", "") or "model", None),
                  getattr(model, "model", None)]
    candidates = [c for c in candidates if isinstance(c, nn.Module)]
    for decoder in candidates:
        layers = _first(decoder, LAYER_NAMES, nn.ModuleList)
        if layers is not None:
            return decoder, layers
    return (candidates or [model])[0], None


def _first(owner: nn.Module, names: tuple[str, ...], kind: type) -> nn.Module | None:
    for name in names:
        found = getattr(owner, name, None)
        if isinstance(found, kind) and (kind is not nn.ModuleList or len(found)):
            return found
    return None


def _is_tied(model: nn.Module, text_config, lm_head: nn.Module) -> bool:
    if getattr(text_config, "tie_word_embeddings", False):
        return True
    embeddings = model.get_input_embeddings()
    if embeddings is None:
        return False
    return lm_head.weight.data_ptr() == embeddings.weight.data_ptr()
