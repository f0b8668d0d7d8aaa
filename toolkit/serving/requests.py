"""Per-request decoding options in vLLM, read from `vllm_xargs` (the OpenAI request body) or
`SamplingParams.extra_args` (offline), with the names the lm-eval backend uses.

- `METHOD: true | false` switches a method on or off (vLLM hands JSON booleans on as 1 and 0,
  which mean the same); for a method with a shorthand option a number sets it and switches the
  method on (`top_n_sigma: 1.5`, `typical: 0.9`; top-n-sigma's n <= 0 is off).
- `METHOD_FIELD: value` sets one of its options (`sled_evolution_rate: 2.5`,
  `sled_layers: [2, 4]`) without switching it.
- A request starts from the served checkpoint's saved decoding (for any other model: nothing
  enabled). Switching on a logits-stage method (SLED, DoLa, contrastive, ...) switches off the
  saved one, so `dola: true` on a SLED checkpoint decodes with DoLa.
- The sampling settings are the request's own fields (`temperature`, `top_p`, `seed`, ...):
  their names in `vllm_xargs` are refused, naming the field to use.

vLLM shares `extra_args` between every logits processor, so a key that names none of ours is
left to the others, unless it is a near miss of one of ours (`sledd`), which is refused.
Every refusal is a `ConfigError` (a ValueError: vLLM answers HTTP 400 with its one line).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.methods.options import DecodingConfig, replacing_saved, with_overrides

# DecodingConfig's plain settings and the request field that carries each in vLLM.
REQUEST_FIELDS = {"do_sample": "temperature", "temperature": "temperature", "top_k": "top_k",
                  "top_p": "top_p", "repetition_penalty": "repetition_penalty",
                  "max_new_tokens": "max_tokens", "seed": "seed"}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def valid_keys() -> list[str]:
    """Every key this module reads: method names and METHOD_FIELD for each option field."""
    keys = []
    for method in methods.all_methods():
        keys.append(method.name)
        keys += [f"{method.name}_{f.name}" for f in dataclasses.fields(method.options)
                 if f.name != "enabled"]
    return keys


def request_decoding(base: DecodingConfig, extra: Mapping[str, Any] | None) -> DecodingConfig:
    """`base` with a request's `extra_args` applied (module docstring); ConfigError on a bad key
    or value, naming it."""
    flags, fields = _parse(extra or {})
    if not flags and not fields:
        return base
    flags = replacing_saved(base, flags, "the served checkpoint's decoding")
    overrides: dict[str, Any] = {}
    for name in dict.fromkeys([*fields, *flags]):
        current = base.method(name)
        try:
            options = dataclasses.replace(current, **fields.get(name, {}))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"vllm_xargs: {err}") from None
        overrides[name] = options if name not in flags else _switched(options, flags[name])
    try:
        return with_overrides(base, **overrides)
    except ConfigError as err:
        raise ConfigError(f"vllm_xargs: {err}") from None


def _switched(options: Any, flag: Any) -> Any:
    if isinstance(flag, bool):
        return dataclasses.replace(options, enabled=flag)
    return flag  # a shorthand number: with_overrides sets the field and switches it on


def _parse(extra: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(method name -> True/False/shorthand number, method name -> {field: value})."""
    by_length = sorted(methods.all_methods(), key=lambda m: len(m.name), reverse=True)
    flags: dict[str, Any] = {}
    fields: dict[str, dict[str, Any]] = {}
    for key, value in extra.items():
        if key in REQUEST_FIELDS:
            raise ConfigError(f"vllm_xargs {key!r} is a sampling setting; set the request's own "
                              f"`{REQUEST_FIELDS[key]}` field instead")
        method = next((m for m in by_length if key == m.name or key.startswith(m.name + "_")),
                      None)
        if method is None:
            _refuse_near_miss(key)
            continue
        if key == method.name:
            flags[method.name] = _flag(method, value)
        else:
            field = key.removeprefix(method.name + "_")
            fields.setdefault(method.name, {})[field] = _field_value(method, field, value)
    return flags, fields


def _refuse_near_miss(key: str) -> None:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.8)
    if close:
        raise ConfigError(f"unknown vllm_xargs key {key!r}; did you mean {close[0]!r}? (the "
                          "model-surgery keys are each method's name and METHOD_OPTION)")


def _flag(method: methods.DecodingMethod, value: Any) -> Any:
    """True/False, or the shorthand number. vLLM passes a JSON true/false on as 1/0, so for a
    method without a shorthand 1 and 0 are true and false."""
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, bool):
        return value
    if method.shorthand and isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    allowed = "true or false" + (f", or a number (its {method.shorthand})"
                                 if method.shorthand else "")
    raise ConfigError(f"vllm_xargs {method.name}={value!r} is not allowed; give {allowed}")


def _field_value(method: methods.DecodingMethod, field: str, value: Any) -> Any:
    """`value` in the type of the options field (JSON and query strings give str/int/float)."""
    known = {f.name: f for f in dataclasses.fields(method.options) if f.name != "enabled"}
    if field not in known:
        raise ConfigError(f"unknown vllm_xargs key '{method.name}_{field}'; {method.name}'s "
                          f"options: {', '.join(f'{method.name}_{k}' for k in known)}")
    default = getattr(method.options(), field)
    key = f"{method.name}_{field}"
    if isinstance(default, bool):
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        number = _number(key, value)
        if float(number).is_integer():
            return int(number)
    elif isinstance(default, float):
        return float(_number(key, value))
    else:
        return value
    raise ConfigError(f"vllm_xargs {key}={value!r} is not a valid "
                      f"{type(default).__name__}")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"vllm_xargs {key}={value!r} is not a number")
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"vllm_xargs {key}={value!r} is not a number") from None
