"""A tiny random model of any causal-LM type in the installed transformers (for coverage tests).

`tiny_any_config(model_type)` takes the config class's defaults and shrinks every key of
`SIZE_KEYS` the class has (through its attribute_map too): hidden ~64, 4 layers, vocab 300.
Per-layer pattern lists sized for the full model are dropped so the config rebuilds them;
`OVERRIDES` holds the few types that need more. `excluded(model_type)` names the types that are
not decoder-only text models (composite vision/audio configs, encoder-decoders).
"""

from __future__ import annotations

import dataclasses
from functools import cache

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from toolkit.testing.models import INITIALIZER_RANGE
from toolkit.testing.tokenizer import VOCAB_SIZE

CAUSAL_LM_TYPES: tuple[str, ...] = tuple(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
LAYERS = 4
# A tiny model above this many parameters means a size key was missed: refuse to build it.
MAX_PARAMETERS = 4_000_000

_HEADS = dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16, n_head=4,
              num_heads=4, num_kv_heads=2, dim_head=16)
_WIDTHS = dict(hidden_size=64, d_model=64, n_embd=64, intermediate_size=128, n_inner=128,
               ffn_dim=128, ffn_hidden_size=128, dim_ff=128, first_dense_intermediate_size=128,
               moe_intermediate_size=32, shared_expert_intermediate_size=32,
               shared_intermediate_size=32, expert_intermediate_size=32,
              shared_experts_intermediate_size=32, dff=128, rotary_dim=8)
_DEPTHS = dict(num_hidden_layers=LAYERS, n_layer=LAYERS, num_layers=LAYERS)
_EXPERTS = dict(num_experts=4, num_local_experts=4, n_routed_experts=4, num_experts_per_tok=2,
                n_shared_experts=1, num_shared_experts=1, n_group=1, topk_group=1,
                num_expert_group=1, first_k_dense_replace=1)
_LATENT = dict(kv_lora_rank=16, q_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=16,
               v_head_dim=16, linear_key_head_dim=16, linear_value_head_dim=16,
               linear_num_key_heads=2, linear_num_value_heads=4, state_size=8,
               mamba_d_state=8, mamba_n_heads=8, mamba_d_head=16, mamba_n_groups=1, n_groups=1,
               n_mamba_heads=8, linear_head_dim=16, linear_num_heads=4, index_head_dim=16,
               index_n_heads=2, indexer_head_dim=16, indexer_n_heads=2, swa_head_dim=16,
               swa_num_attention_heads=4, swa_num_key_value_heads=2, index_num_heads=2,
               mamba_d_ssm=128, unpadded_vocab_size=VOCAB_SIZE,
               vocab_size_per_layer_input=VOCAB_SIZE, hidden_size_per_layer_input=16)
_SEQUENCE = dict(vocab_size=VOCAB_SIZE, max_position_embeddings=256, n_positions=256,
                 sliding_window=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                 initializer_range=INITIALIZER_RANGE)
SIZE_KEYS: dict[str, object] = {**_HEADS, **_WIDTHS, **_DEPTHS, **_EXPERTS, **_LATENT, **_SEQUENCE}
# Every logit transform gets a value that shows (the defaults are often 1 or None), so the
# graft-time probe proves discovery applies it. MiniCPM3: hidden 64 / dim_model_base 16 = 4.
LOGIT_KEYS = dict(logits_scaling=4.0, logit_scale=0.25, lm_head_multiplier=0.5,
                  logits_mup_width_multiplier=2.0, dim_model_base=16,
                  final_logit_softcapping=5.0, logits_soft_cap=5.0, output_logit_soft_cap=5.0)
# Per-layer lists that default to None and are derived from the layer count: left None.
PATTERN_KEYS = ("layer_types", "mlp_layer_types", "layers_block_type", "attention_layers")

# The few types whose tiny config needs more than SIZE_KEYS: hybrids whose layer pattern is a
# period/offset or absent get one with attention layers (a cache of only state-space layers
# fails in generate()); the others satisfy their config's own validation or defaults.
OVERRIDES: dict[str, dict] = {
    "gpt_neo": {"attention_types": [[["global", "local"], LAYERS // 2]]},
    "mamba2": {"num_heads": 8, "head_dim": 16},  # num_heads * head_dim = 2 * hidden
    "zaya": {"num_experts_per_tok": 1},  # the only value it supports
    # Reformer's LM head asserts is_decoder; its axial position embeddings must sum to hidden.
    "reformer": {"is_decoder": True, "axial_pos_embds_dim": [32, 32], "axial_pos_shape": [16, 16]},
    "jamba": {"attn_layer_period": 2, "attn_layer_offset": 1},
    "bamba": {"attn_layer_indices": [1, 3]},
    "granitemoehybrid": {"layer_types": ["mamba", "attention"] * (LAYERS // 2)},
    "gemma3n_text": {"num_kv_shared_layers": 0},  # the default shares more layers than 4
    "lfm2_moe": {"layer_types": ["conv", "full_attention"] * (LAYERS // 2)},
    "zamba": {"layers_block_type": ["linear_attention", "hybrid"] * (LAYERS // 2)},
    "xlstm": {"qk_dim_factor": 1.0},  # its generate() cache assumes qk and v heads alike
    # DBRX's attention reads rope_theta and clip_qkv from its attn_config.
    "dbrx": {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
             "attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0},
             "ffn_config": {"ffn_hidden_size": 128, "moe_num_experts": 4, "moe_top_k": 2}},
    "cohere_compass_text": {"rope_parameters": {"full_attention": {"rope_type": "default",
                                                                   "rope_theta": 10000.0}}},
}


def excluded(model_type: str) -> str | None:
    """Why `model_type` is not a decoder-only text type, or None when it is one."""
    config = CONFIG_MAPPING[model_type]
    if _default(config, "is_encoder_decoder") is True:
        return "encoder-decoder config (its causal-LM class is the decoder half)"
    if _default(config, "is_decoder") is False and "add_cross_attention" in _fields(config):
        return "encoder config (BERT-style): a causal LM only when flagged is_decoder=True"
    sub = set(getattr(config, "sub_configs", {}) or {}) - {"attn_config", "ffn_config"}
    if sub:
        return f"composite config ({', '.join(sorted(sub))}): not a text-only model"
    return None


def _default(config_class: type, name: str):
    if name not in _fields(config_class):
        return getattr(config_class, name, None)
    return next(f.default for f in dataclasses.fields(config_class) if f.name == name)


def decoder_only_types() -> list[str]:
    """The causal-LM types of the installed transformers that are decoder-only text models."""
    return [t for t in CAUSAL_LM_TYPES if excluded(t) is None]


@cache
def _fields(config_class: type) -> frozenset[str]:
    if dataclasses.is_dataclass(config_class):
        return frozenset(f.name for f in dataclasses.fields(config_class))
    return frozenset()


def tiny_any_config(model_type: str) -> PretrainedConfig:
    """The config class of `model_type` with its size keys shrunk (see module doc)."""
    config_class = CONFIG_MAPPING[model_type]
    names = _fields(config_class)
    aliases = getattr(config_class, "attribute_map", {}) or {}
    kwargs = {}
    for key, value in {**SIZE_KEYS, **LOGIT_KEYS}.items():
        for name in (key, aliases.get(key)):
            if name in names:
                kwargs[name] = value
    if "kv_lora_rank" in names:  # multi-head latent attention: as many kv heads as heads
        kwargs["num_key_value_heads"] = kwargs["num_attention_heads"]
    kwargs.update({key: None for key in PATTERN_KEYS if key in names})
    kwargs.update(_patterns(config_class, names))
    kwargs.update(OVERRIDES.get(model_type, {}))
    config = config_class(**kwargs)
    config.dtype = torch.float32
    return config


def _patterns(config_class: type, names: frozenset[str]) -> dict[str, list]:
    """Every per-layer list of names or fractions in the default config (as long as its layer
    count), cut to LAYERS entries that keep each kind of layer it has (a hybrid stays hybrid).
    Lists of integers are left alone: they are layer indices or sizes."""
    try:
        default = config_class()
        count, values = default.num_hidden_layers, default.to_dict()
    except Exception:  # noqa: BLE001 - a config without usable defaults has no patterns to keep
        return {}
    patterns = {}
    for name in names:
        value = values.get(name)
        if (isinstance(value, list) and len(value) == count > LAYERS
                and all(isinstance(v, (str, float)) for v in value)):
            kept = value[:LAYERS]
            missing = [kind for kind in dict.fromkeys(value) if kind not in kept]
            patterns[name] = kept[:LAYERS - len(missing)] + missing
    return patterns


def build_any_tiny(model_type: str, seed: int = 0) -> PreTrainedModel:
    """A float32 tiny random model of `model_type` in eval mode (global RNG untouched).

    Raises ValueError when the shrunk config still has more than MAX_PARAMETERS parameters.
    """
    config = tiny_any_config(model_type)
    with torch.device("meta"):
        count = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(f"the tiny {model_type} config has {count} parameters; a size key "
                         "of its config is not in SIZE_KEYS")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()
