"""Load a recipe: schema <- YAML file <- `key=value` overrides, then typed objects.

Every OmegaConf error is turned into one `ConfigError` line that names the key, where it came
from (the file and line, or the command line) and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigKeyError,
    InterpolationResolutionError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from toolkit import methods
from toolkit.core.errors import ConfigError, check_finite
from toolkit.io.jsonl import is_text
from toolkit.recipes import shorthand
from toolkit.recipes.schema import Recipe


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """The typed `Recipe` from a YAML file and `key=value` overrides (later ones win)."""
    return to_recipe(merged_config(path, overrides))


def merged_config(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The merged (not yet resolved) OmegaConf tree; raises ConfigError on any problem."""
    path = Path(path)
    raw = _read_yaml(path)
    parsed_overrides = _parse_overrides(overrides)
    import_plugins([raw, *parsed_overrides])
    schema = OmegaConf.structured(Recipe)
    with _translated(f"recipe {path}", path):
        merged = OmegaConf.merge(schema, shorthand.expand(raw))
    sections = shorthand.method_keys()
    for item, parsed in zip(overrides, parsed_overrides, strict=True):
        whole = item.partition("=")[0].strip() in sections
        parsed = shorthand.expand(parsed, shorthands=whole)
        with _translated(f"override '{item}'"):
            merged = OmegaConf.merge(merged, parsed)
        _drop_replaced(merged, item.partition("=")[0].strip())
    return merged


# An override of one of these keys replaces the other when the recipe file set it (prompts
# given on the command line win over the recipe's inline prompts, and the other way round).
REPLACES = {"generate.input": ("generate", "prompts", []),
            "generate.prompts": ("generate", "input", None)}


def _drop_replaced(merged: DictConfig, key: str) -> None:
    if key not in REPLACES or OmegaConf.select(merged, key) in (None, []):
        return
    section, other, empty = REPLACES[key]
    merged[section][other] = empty


def import_plugins(sources: Sequence[DictConfig]) -> None:
    """Import the modules the recipe's `imports` key names (the last of the file and the
    overrides that sets it wins, as for any key)."""
    names = next((s.get("imports") for s in reversed(sources) if "imports" in s), None) or []
    if not isinstance(names, (list, ListConfig)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"imports must be a list of module names, not {names!r}")
    for name in names:
        methods.import_module(name)


def to_recipe(config: DictConfig) -> Recipe:
    """Resolve interpolations and build the dataclasses (runs every section's checks); every
    float anywhere in the recipe must be finite, and no string but a prompt may hold a NUL
    byte (no path can: the OS refuses it with a ValueError). A plugin method's section is checked against
    its options dataclass as a built-in's is."""
    plugins = OmegaConf.select(config, "decoding.plugins") or {}
    for name in list(plugins):
        schema = OmegaConf.structured(methods.get(name).options)
        with _translated("recipe"):
            plugins[name] = OmegaConf.merge(schema, plugins[name])
    with _translated("recipe"):
        recipe = OmegaConf.to_object(config)
    _check_values(recipe, "")
    return recipe


def _check_values(value: Any, key: str) -> None:
    """Raise ConfigError naming the first NaN or infinite float, or the first string holding a
    NUL byte outside generate.prompts, in a recipe tree."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _check_values(getattr(value, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_values(item, f"{key}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            _check_values(item, f"{key}.{k}")
    elif isinstance(value, str) and "\0" in value and not key.startswith("generate.prompts["):
        raise ConfigError(f"{key}={value!r} holds a NUL byte (\\0), which no file name or "
                          "option value can hold; remove it")
    else:
        check_finite(key, value)


def resolved_yaml(config: DictConfig) -> str:
    """The recipe as YAML with every `${...}` resolved (for `--print-config`)."""
    with _translated("recipe"):
        return OmegaConf.to_yaml(config, resolve=True)


# The most YAML nodes a recipe may hold, aliases expanded. OmegaConf's default, 10,000, refused
# 11,000 inline prompts as "malformed"; OmegaConf builds each node several times (11,000
# prompts take about 10 s to load), so longer lists belong in a JSONL file. An alias bomb is
# refused whatever its size: aliases may not multiply the nodes written more than 100 times.
MAX_YAML_NODES = 50_000


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        hint = " (it is a directory)" if path.is_dir() else ""
        raise ConfigError(f"recipe file not found: {path}{hint}; give the path to a .yaml recipe")
    try:
        loaded = OmegaConf.load(path, max_yaml_expanded_nodes=MAX_YAML_NODES)
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_problem(path, err)) from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of recipe keys at the top level, not a list")
    return loaded


def _yaml_problem(path: Path, err: yaml.YAMLError) -> str:
    """One line for a recipe file YAML cannot load: the real reason, and the fix."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if problem.startswith("YAML node expansion exceeds"):
        return (f"recipe {path} holds more than {MAX_YAML_NODES} YAML nodes (aliases "
                "expanded), the most a recipe takes; put long prompt lists in a JSONL file "
                "(generate.input) instead")
    if problem.startswith("YAML aliases expand"):
        counts = problem.split(",")[0].removeprefix("YAML aliases expand the document ")
        return (f"recipe {path}: its YAML aliases expand it {counts}, more than 100 times the "
                "nodes written; write the repeated values out")
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    return f"malformed YAML in {where}: {problem}"


def _parse_overrides(overrides: Sequence[str]) -> list[DictConfig]:
    parsed = []
    for item in overrides:
        if not is_text(item):
            raise ConfigError(
                f"override {ascii(item)} is not UTF-8 text (a byte that is not UTF-8, or a lone "
                "surrogate, shown as \\udcXX); write it in UTF-8"
            )
        if "=" not in item or item.startswith("="):
            raise ConfigError(
                f"override {item!r} is not key=value; e.g. decoding.sled.enabled=true"
            )
        key = item.partition("=")[0].strip()
        if "[" in key:
            raise ConfigError(
                f"override {item!r} sets one item of a list; give the whole list, e.g. "
                f"{key.partition('[')[0]}=[a,b]"
            )
        try:
            parsed.append(OmegaConf.from_dotlist([item]))
        except yaml.YAMLError:
            value = item.partition("=")[2]
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML; put it in double quotes "
                f"(inside them \\n is a newline), e.g. {key}='{_double_quoted(value)}'"
            ) from None
    return parsed


def _double_quoted(value: str) -> str:
    """The value as a double-quoted YAML string, or a list of one such string for '[...]'."""
    value = value.strip()
    is_list = value.startswith("[") and value.endswith("]")
    inner = value[1:-1].strip() if is_list else value
    quoted = '"' + inner.replace('"', '\\"') + '"'
    return f"[{quoted}]" if is_list else quoted


class _translated:
    """Context manager: OmegaConf errors -> one-line ConfigError naming key and source."""

    def __init__(self, source: str, path: Path | None = None) -> None:
        self.source = source
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, tb) -> bool:
        if err is None or not isinstance(err, OmegaConfBaseException):
            return False
        raise ConfigError(self._message(err)) from None

    def _message(self, err: OmegaConfBaseException) -> str:
        key = getattr(err, "full_key", None) or ""
        text = (getattr(err, "msg", None) or str(err)).splitlines()[0]
        if isinstance(err, ConfigKeyError) and key:
            plugin = (" (a method from another package: install it, or list its module under "
                      "imports)") if re.fullmatch(r"decoding\.\w+", key) else ""
            return f"unknown key '{key}' in {self._where(key)}; {_suggest(key)}{plugin}"
        if isinstance(err, MissingMandatoryValue):
            return f"{key} has no value in {self.source}; set it, e.g. {key}=..."
        if isinstance(err, InterpolationResolutionError):
            return f"cannot resolve {key} in {self.source}: {text}"
        if isinstance(err, ValidationError) and key:
            got = re.search(r"Value '(.*?)'", text)
            value = f" got {got.group(1)!r};" if got else ""
            tp = _field_type(key)
            hint = f", e.g. {key}='[a, b]'" if typing.get_origin(tp) is list else ""
            return f"wrong type for {key} in {self._where(key)}:{value} expected {_type_name(tp)}{hint}"
        section = re.search(r"(\w+) is not a subclass of (\w+)", text)
        if section:
            got, schema = section.groups()
            return f"{self.source}: expected a mapping of {schema} keys, got {got}"
        return f"invalid {self.source}: {text}"

    def _where(self, key: str) -> str:
        if self.path is None:
            return self.source
        leaf = re.sub(r"\[\d+\]$", "", key).split(".")[-1]
        pattern = re.compile(rf"^\s*{re.escape(leaf)}\s*:")
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if pattern.match(line):
                return f"{self.path}:{number}"
        return self.source


def _schema_at(parts: Sequence[str]) -> Any:
    """The dataclass reached by following `parts` from Recipe (None when not a dataclass)."""
    cls: Any = Recipe
    for part in parts:
        if not dataclasses.is_dataclass(cls):
            return None
        cls = typing.get_type_hints(cls).get(part)
    return cls


def _field_type(key: str) -> Any:
    parts = re.sub(r"\[\d+\]", "", key).split(".")
    tp = _schema_at(parts)
    if re.search(r"\[\d+\]$", key) and typing.get_args(tp):
        return typing.get_args(tp)[0]
    return tp


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if tp is Any or tp is None:
        return "a value"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} keys"
    return getattr(tp, "__name__", str(tp))


def _suggest(key: str) -> str:
    parts = key.split(".")
    parent, leaf = parts[:-1], parts[-1]
    schema = _schema_at(parent)
    if not dataclasses.is_dataclass(schema):
        return "check the spelling against the recipe reference"
    valid = [f.name for f in dataclasses.fields(schema)]
    prefix = ".".join(parent) + "." if parent else ""
    close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{prefix}{close[0]}'?"
    return f"valid keys here: {', '.join(prefix + v for v in valid)}"
