"""Recipe shorthands for decoding methods, applied to the raw YAML before the schema merge.

- A method section given as a mapping means "enabled" unless it says `enabled: false`:
  `decoding.sled: {evolution_rate: 2.5}` turns SLED on (as `generate(sled={...})` does).
- `decoding.top_n_sigma: 1.0` (a flat number, as llama.cpp's `--top-n-sigma` spells it) means
  `{enabled: true, n: 1.0}` (a method's registered `shorthand` field); `true` / `false` /
  `null` switch a method on or off.

Both hold for every registered method (`toolkit.methods`), in the recipe file and for an override of the whole
section (`decoding.top_n_sigma=1.5`, `decoding.sled='{evolution_scale: 20}'`); an override of a
single field (`decoding.sled.evolution_rate=3`) leaves `enabled` as it was.

A Lightning Trainer argument written flat under `trainer:` that is not one of its typed fields
(`trainer.num_nodes=2`) moves to `trainer.lightning` (`toolkit.lpo.trainer_args`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from toolkit import methods
from toolkit.lpo import trainer_args
from toolkit.lpo.config import TrainerConfig
from toolkit.methods.options import METHOD_FIELDS

DECODING_SECTIONS = (("decoding",),)


def method_keys() -> set[str]:
    """Dotted keys of every method section, e.g. 'decoding.sled'."""
    return {".".join((*section, m.name)) for section in DECODING_SECTIONS
            for m in methods.all_methods()}


def expand(raw: DictConfig, shorthands: bool = True) -> DictConfig:
    """`raw` with every method shorthand written out as a mapping with `enabled` (unless
    `shorthands` is false: an override of one field) and every plugin method's section moved
    from `decoding.<name>` to its home in the typed config, `decoding.plugins.<name>`."""
    tree = OmegaConf.to_container(raw, resolve=False)
    for section in DECODING_SECTIONS:
        node: Any = tree
        for part in section:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            for method in methods.all_methods():
                if method.name not in node:
                    continue
                value = node.pop(method.name)
                value = _expanded(method, value) if shorthands else value
                home = node if method.name in METHOD_FIELDS else node.setdefault("plugins", {})
                home[method.name] = value
    if isinstance(tree.get("trainer"), dict):
        fields = {f.name for f in dataclasses.fields(TrainerConfig)}
        tree["trainer"] = trainer_args.sort_section(tree["trainer"], fields)
    return OmegaConf.create(tree)


def _expanded(method: methods.DecodingMethod, value: Any) -> Any:
    if isinstance(value, dict):
        return {"enabled": True, **value}
    if value is None or isinstance(value, bool):
        return {"enabled": bool(value)}
    if method.shorthand and isinstance(value, (int, float)):
        return {"enabled": True, method.shorthand: float(value)}
    return value
