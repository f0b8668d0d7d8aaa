"""transformers `generate()` keywords beside our decoding options.

`AugmentedModel.generate` takes both. Our options (`toolkit.options.DecodingConfig` fields) build
the processors in our composition order (docs/methods.md section 7); every keyword that
transformers' `generate()` or `GenerationConfig` accepts (`eos_token_id`, `pad_token_id`,
`min_new_tokens`, `stop_strings`, `num_return_sequences`, `min_p`, `typical_p`,
`no_repeat_ngram_size`, `bad_words_ids`, `generation_config`, `streamer`, `stopping_criteria`,
`logits_processor`, `return_dict_in_generate`, `output_scores`, ...) goes to the base model's
`generate()` unchanged. Keywords that would fight our composition raise a ConfigError.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from functools import cache
from typing import Any

from transformers import GenerationConfig, GenerationMixin

from toolkit import methods
from toolkit.errors import ConfigError
from toolkit.options import DecodingConfig

logger = logging.getLogger(__name__)

OURS = frozenset(f.name for f in dataclasses.fields(DecodingConfig))
# generate()'s named parameters, and keys it reads from **kwargs besides GenerationConfig fields.
_PARAMS = frozenset(inspect.signature(GenerationMixin.generate).parameters) - {
    "self", "inputs", "kwargs"}
_EXTRA = frozenset({"tokenizer", "past_key_values", "use_model_defaults"})
_CONFIG_FIELDS = frozenset(k for k in GenerationConfig().to_dict() if not k.startswith("_"))
HF_KEYS = (_PARAMS | _EXTRA | _CONFIG_FIELDS) - OURS - {
    "dola_layers", "custom_generate", "transformers_version"}
# Ours, applied in our composition order; a generation_config must leave them neutral.
_COMPOSED = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}


def split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(our decoding overrides, transformers generate kwargs); unknown keys raise ConfigError."""
    ours: dict[str, Any] = {}
    hf: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in OURS:
            ours[key] = value
        elif key in HF_KEYS:
            hf[key] = value
        elif key == "dola_layers":
            raise ConfigError(
                "dola_layers is transformers' Hub DoLa (remote code); use our DoLa: dola=True or "
                "dola={'layers': 'high'}"
            )
        elif key == "custom_generate":
            raise ConfigError(
                "custom_generate replaces the decoding loop AugmentedModel.generate builds; call "
                "the base model's generate() with it instead"
            )
        else:
            raise ConfigError(
                f"unknown generate option {key!r}; give one of our decoding options "
                f"({', '.join(sorted(OURS))}) or a transformers generate()/GenerationConfig "
                "keyword (e.g. eos_token_id, min_new_tokens, stop_strings)"
            )
    ours = {**_from_generation_config(hf.get("generation_config"), ours), **ours}
    return ours, hf


def _from_generation_config(config: GenerationConfig | None, ours: dict[str, Any]) -> dict:
    """do_sample / max_new_tokens taken from a passed generation_config (unless given as
    keywords); temperature / top_k / top_p / repetition_penalty there raise a ConfigError."""
    if config is None:
        return {}
    for key, neutral in _COMPOSED.items():
        value = getattr(config, key, None)
        if value is not None and value != neutral:
            raise ConfigError(
                f"generation_config.{key}={value!r} would bypass our composition order; pass "
                f"{key}={value!r} to AugmentedModel.generate instead (docs/methods.md section 7)"
            )
    if getattr(config, "dola_layers", None) is not None:
        raise ConfigError("generation_config.dola_layers is transformers' Hub DoLa; use dola=True")
    return {k: getattr(config, k) for k in ("do_sample", "max_new_tokens")
            if getattr(config, k, None) is not None and k not in ours}


def setting(hf: dict[str, Any], key: str, default: Any = None) -> Any:
    """A generate setting from the keywords, else from a passed generation_config."""
    if hf.get(key) is not None:
        return hf[key]
    value = getattr(hf.get("generation_config"), key, None)
    return default if value is None else value


def check(options: DecodingConfig, hf: dict[str, Any]) -> None:
    """Refuse combinations that cannot compose; warn once about redundant truncation."""
    beams = setting(hf, "num_beams", 1)
    tapped = [m.name for m in methods.active(options) if m.tap != "none"]
    if beams > 1 and tapped:
        raise ConfigError(
            f"num_beams={beams} cannot compose with {' and '.join(tapped)}: they read one "
            "position per row at sampling time; use num_beams=1 (greedy or sampling)"
        )
    if options.top_n_sigma.enabled and options.do_sample:
        others = [name for name, on in (("top_p", options.top_p < 1.0),
                                        ("min_p", setting(hf, "min_p") is not None)) if on]
        if others:
            _warn_truncation(" and ".join(others))


@cache
def _warn_truncation(others: str) -> None:
    logger.warning(
        "top-n-sigma is combined with %s; its authors advise using top-n-sigma as the first and "
        "only truncation (docs/methods.md section 4)", others)


def kwargs_for(options: DecodingConfig, hf: dict[str, Any], config: GenerationConfig,
               tokenizer, explicit: Any = ()) -> dict[str, Any]:
    """The keyword arguments for the base model's generate(): ours switch transformers' own
    temperature / top-k / top-p / repetition warpers off; eos and pad default to the base's
    generation_config, else the tokenizer; the caller's transformers keywords win. A caller's
    `max_length` replaces our default max_new_tokens unless that is in `explicit` too."""
    kwargs: dict[str, Any] = dict(repetition_penalty=1.0, do_sample=options.do_sample)
    if setting(hf, "max_length") is None or "max_new_tokens" in explicit:
        kwargs["max_new_tokens"] = options.max_new_tokens
    if options.do_sample:
        kwargs.update(temperature=1.0, top_k=0, top_p=1.0)
    if config.pad_token_id is None and tokenizer is not None and tokenizer.pad_token_id is not None:
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    if config.eos_token_id is None and tokenizer is not None and tokenizer.eos_token_id is not None:
        kwargs["eos_token_id"] = tokenizer.eos_token_id
    if setting(hf, "stop_strings") is not None and "tokenizer" not in hf:
        if tokenizer is None:
            raise ConfigError("stop_strings needs a tokenizer; pass tokenizer=... as well")
        kwargs["tokenizer"] = tokenizer
    return {**kwargs, **hf}


def eos_ids(hf: dict[str, Any], config: GenerationConfig, tokenizer) -> list[int]:
    """The eos ids this call stops on (for the reply mask)."""
    eos = setting(hf, "eos_token_id")
    if eos is None:
        eos = config.eos_token_id
    if eos is None and tokenizer is not None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]
