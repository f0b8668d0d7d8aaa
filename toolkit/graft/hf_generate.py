"""transformers `generate()` keywords beside our decoding options, by transformers' rules.

`AugmentedModel.generate` takes both. Sampling settings (do_sample, temperature, top_k, top_p,
repetition_penalty) come, first found wins, from: our keywords -> a passed `generation_config`
-> the set (not None) fields of the DecodingConfig (recipe / checkpoint) -> the base model's
`generation_config` -> transformers' global defaults (greedy; top_k 50 when sampling).
`effective_options` gives the DecodingConfig with all of them set; we apply temperature, top-k, top-p and the
repetition penalty in our composition order (docs/methods.md section 7) and hand transformers
one GenerationConfig (`kwargs_for`) with its own copies neutral. Every other keyword that
transformers' `generate()` or `GenerationConfig` accepts (`eos_token_id`, `min_new_tokens`,
`stop_strings`, `num_return_sequences`, `min_p`, `typical_p`, `streamer`, `stopping_criteria`,
`logits_processor`, `output_scores`, ...) keeps its transformers meaning: config fields go into
that GenerationConfig, the rest to `generate()`. Only options that cannot compose raise a
ConfigError.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
from functools import cache
from typing import Any

from transformers import GenerationConfig, GenerationMixin

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.methods.options import (
    NEUTRAL,
    DecodingConfig,
    check_generation_settings,
    replacing_saved,
    with_overrides,
)

logger = logging.getLogger(__name__)

OURS = frozenset(f.name for f in dataclasses.fields(DecodingConfig)) - {"plugins"}
# generate()'s named parameters, and keys it reads from **kwargs besides GenerationConfig fields.
_PARAMS = frozenset(inspect.signature(GenerationMixin.generate).parameters) - {
    "self", "inputs", "kwargs"}
_EXTRA = frozenset({"tokenizer", "past_key_values", "use_model_defaults"})
_CONFIG_FIELDS = frozenset(k for k in GenerationConfig().to_dict() if not k.startswith("_"))
HF_KEYS = (_PARAMS | _EXTRA | _CONFIG_FIELDS) - OURS - {
    "dola_layers", "custom_generate", "transformers_version"}
# transformers' global defaults of the settings we apply (GenerationConfig's
# `_get_default_generation_params` in transformers 5): what a model that sets none of them gets.
TRANSFORMERS_DEFAULTS = {**NEUTRAL, "top_k": 50}


def split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(our decoding overrides, transformers generate kwargs); unknown keys raise ConfigError."""
    ours: dict[str, Any] = {}
    hf: dict[str, Any] = {}
    mine = OURS | {m.name for m in methods.all_methods()}
    for key, value in kwargs.items():
        if key in mine:
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
                f"({', '.join(sorted(mine))}) or a transformers generate()/GenerationConfig "
                "keyword (e.g. eos_token_id, min_new_tokens, stop_strings)"
            )
    if getattr(hf.get("generation_config"), "dola_layers", None) is not None:
        raise ConfigError("generation_config.dola_layers is transformers' Hub DoLa; use dola=True")
    return ours, hf


def effective_options(decoding: DecodingConfig, overrides: dict[str, Any], hf: dict[str, Any],
                      model_config: GenerationConfig,
                      source: str = "the saved decoding") -> DecodingConfig:
    """`decoding` with `overrides` applied and every sampling setting set, by transformers'
    precedence (module doc); max_new_tokens from a passed generation_config unless given. A
    logits-stage method the overrides switch on replaces the one `decoding` enables
    (`toolkit.methods.options.replacing_saved`; `source` names who saved `decoding`)."""
    options = with_overrides(decoding, **replacing_saved(decoding, overrides, source))
    passed = hf.get("generation_config")
    check_generation_settings(passed)
    changes: dict[str, Any] = {}
    for key, default in TRANSFORMERS_DEFAULTS.items():
        sources = (getattr(passed, key, None), getattr(options, key),
                   getattr(model_config, key, None), default)
        changes[key] = overrides[key] if overrides.get(key) is not None else next(
            v for v in sources if v is not None)
    if "max_new_tokens" not in overrides and getattr(passed, "max_new_tokens", None):
        changes["max_new_tokens"] = passed.max_new_tokens
    return dataclasses.replace(options, **changes)


def setting(hf: dict[str, Any], key: str, default: Any = None) -> Any:
    """A generate setting from the keywords, else from a passed generation_config."""
    if hf.get(key) is not None:
        return hf[key]
    value = getattr(hf.get("generation_config"), key, None)
    return default if value is None else value


# transformers' own warpers, added after every processor of ours when sampling: a call with
# one seed per prompt draws in its last processor, before them, so it refuses them.
_LATE_WARPERS = ("min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "top_h",
                 "watermarking_config")


def row_seeds(kwargs: dict[str, Any], prompts: int) -> list[int] | None:
    """A `seed` keyword that is a list (one seed per prompt), popped from `kwargs`; None when
    `seed` is absent or one integer. ConfigError when it is not one integer per prompt."""
    seed = kwargs.get("seed")
    if seed is None or isinstance(seed, int) and not isinstance(seed, bool):
        return None
    values = seed.tolist() if hasattr(seed, "tolist") else seed
    if not (isinstance(values, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in values)):
        raise ConfigError(f"seed={seed!r} is not allowed; give an integer, or a list of one "
                          "integer per prompt")
    if len(values) != prompts:
        raise ConfigError(f"seed has {len(values)} values for {prompts} prompts; give one "
                          "seed per prompt (or one integer for the whole batch)")
    del kwargs["seed"]
    return list(values)


def check(options: DecodingConfig, hf: dict[str, Any], seeds: list[int] | None = None) -> None:
    """Refuse combinations that cannot compose; warn once about redundant truncation."""
    late = [k for k in _LATE_WARPERS if setting(hf, k) is not None]
    if seeds is not None and options.do_sample and late:
        raise ConfigError(
            f"seed=[...] (one per prompt) draws each row's token before transformers applies "
            f"{' and '.join(late)}; give one integer seed with {late[0]}, or leave it out"
        )
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
    """The keyword arguments for the base model's generate(): one GenerationConfig (a copy of
    the passed one, with the caller's config keywords) in which our settings switch
    transformers' own temperature / top-k / top-p / repetition warpers off, beside generate()'s
    non-config keywords; no config field is passed as a keyword next to it. eos and pad
    default to the base's generation_config (`config`), else the tokenizer. A caller's
    `max_length` replaces our max_new_tokens unless that is in `explicit` too."""
    passed = hf.get("generation_config")
    generation = copy.deepcopy(passed) if passed is not None else GenerationConfig()
    fields = {k: v for k, v in hf.items() if k in _CONFIG_FIELDS}
    # Greedy runs no warper; there transformers' own defaults keep it from flagging sampling
    # settings that a model's generation_config sets (it does so for any passed config).
    fields.update(NEUTRAL if options.do_sample else TRANSFORMERS_DEFAULTS,
                  do_sample=options.do_sample)
    if setting(hf, "max_length") is None or "max_new_tokens" in explicit:
        fields["max_new_tokens"] = options.max_new_tokens
    generation.update(**fields)  # at once: update() validates the result
    if (generation.pad_token_id is None and config.pad_token_id is None and tokenizer is not None
            and tokenizer.pad_token_id is not None):
        generation.pad_token_id = tokenizer.pad_token_id
    if (generation.eos_token_id is None and config.eos_token_id is None and tokenizer is not None
            and tokenizer.eos_token_id is not None):
        generation.eos_token_id = tokenizer.eos_token_id
    kwargs = {k: v for k, v in hf.items() if k not in _CONFIG_FIELDS and k != "generation_config"}
    if setting(hf, "stop_strings") is not None and "tokenizer" not in hf:
        if tokenizer is None:
            raise ConfigError("stop_strings needs a tokenizer; pass tokenizer=... as well")
        kwargs["tokenizer"] = tokenizer
    return {"generation_config": generation, **kwargs}


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
