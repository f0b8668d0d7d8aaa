"""vLLM's config for a model-surgery checkpoint: the base model's, under our architecture name.

A checkpoint's own config.json is a pointer, not a model config. vLLM reads a model folder's
config through the config parser registered for its format ("hf" for a folder with a
config.json); `SurgeryConfigParser` is that parser with one addition: for a folder holding a
checkpoint it reads the checkpoint (files checked against their saved hashes), finds its base
(preparing a preset into the cache if needed) and returns the base's config with
`architectures` renamed to `ModelSurgery_<base architecture>` (toolkit.serving.model), and the
checkpoint's saved sampling settings as the defaults vLLM gives requests that leave them unset.
Every other folder is parsed by vLLM's own parser, unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import GenerationConfig
from vllm.transformers_utils.config import HFConfigParser

from toolkit.graft import checkpoint, hf_generate
from toolkit.graft.layers import candidate_layers
from toolkit.serving import state

ARCH_PREFIX = "ModelSurgery_"


class SurgeryConfigParser(HFConfigParser):
    """vLLM's HF config parser, reading model-surgery checkpoints as their base (module doc)."""

    def parse(self, model: str | Path, trust_remote_code: bool, revision: str | None = None,
              code_revision: str | None = None, **kwargs) -> tuple[dict, Any]:
        if not state.is_checkpoint(model):
            return super().parse(model, trust_remote_code, revision, code_revision, **kwargs)
        served = state.served(model)
        ckpt = checkpoint.read(model) if served is None else None
        base_path = ckpt.base_path if served is None else served.base_path
        config_dict, config = super().parse(base_path, trust_remote_code, None, code_revision,
                                            **kwargs)
        if served is None:
            served = state.remember(_served(ckpt, base_path, config.get_text_config()))
        config.architectures = [ARCH_PREFIX + arch for arch in config.architectures or ()]
        for key, value in sampling_defaults(served.decoding, base_path, config).items():
            setattr(config, key, value)
        return config_dict, config


def load_served(path, text_config) -> state.Served:
    """The checkpoint at `path` as this process serves it (read once per process)."""
    served = state.served(path)
    if served is None:
        ckpt = checkpoint.read(path)
        served = state.remember(_served(ckpt, ckpt.base_path, text_config))
    return served


def _served(ckpt, base_path: str, text_config) -> state.Served:
    num_layers = text_config.num_hidden_layers
    tied = bool(getattr(text_config, "tie_word_embeddings", False))
    layers = candidate_layers(ckpt.graft.layers, num_layers, tied, key="graft.layers")
    return state.Served(directory=ckpt.directory, base_path=base_path, graft=ckpt.graft,
                        decoding=ckpt.decoding, vocab_size=text_config.vocab_size,
                        num_layers=num_layers, tied=tied, layers=tuple(layers), head_state=ckpt.head_state)


def sampling_defaults(decoding, base_path: str, config) -> dict[str, Any]:
    """The checkpoint's sampling settings as vLLM reads a model's defaults (from the attributes
    of its config when the folder has no generation_config.json): what AugmentedModel.generate
    would use (saved settings, else the base's generation_config, else transformers'); greedy
    is temperature 0."""
    try:
        base = GenerationConfig.from_pretrained(base_path)
    except OSError:
        base = GenerationConfig.from_model_config(config)
    options = hf_generate.effective_options(decoding, {}, {}, base)
    defaults = {"do_sample": True, "max_new_tokens": options.max_new_tokens,
                "temperature": options.temperature if options.do_sample else 0.0,
                "repetition_penalty": options.repetition_penalty}
    if options.do_sample:
        defaults.update(top_k=options.top_k, top_p=options.top_p)
    return defaults
