"""What makes a checkpoint what it claims to be: a content hash of every file, a sample of the
base's weights, a known format version, and a config that passes the typed schema.

- `file_hashes(dir)`: {relative path: sha256} of every file but augment_config.json, stored in
  augment_config.json as `files` and checked on load (`check_files`).
- `weight_sample(model)`: 64 fixed entries of the input embedding and 64 of lm_head, stored as
  `weight_fingerprint` and compared on load with a tolerance that a dtype change passes
  (bfloat16 keeps ~3 digits) while other weights of the same architecture do not.
- `check_head_shapes(path, shapes, graft)`: the head tensors' shapes in the safetensors header
  agree with the graft config, checked before a head of that size is allocated.
- `parse_config(data, path)`: the format version (a newer one is a clear error) and the graft /
  decoding sections validated against `GraftConfig` / `DecodingConfig` (every graft key must be
  present, no unknown keys anywhere, types and ranges as for recipes).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import torch

from toolkit import methods
from toolkit.core.errors import CheckpointError, ToolkitError
from toolkit.graft.prompting import CHAT, CONVENTIONS
from toolkit.io.files import sha256_file
from toolkit.io.layout import CONFIG_FILE
from toolkit.methods.options import DecodingConfig, GraftConfig

# 3: the base reference is "self", "preset:NAME", "hub:ID" or "path:RELATIVE" (to the
# checkpoint); formats 1-2 stored an absolute path or a Hub id.
FORMAT_VERSION = 3
REQUIRED = {
    1: ("format_version", "graft", "decoding", "base", "base_fingerprint"),
    2: ("format_version", "graft", "decoding", "base", "base_fingerprint", "files",
        "weight_fingerprint"),
}
REQUIRED[3] = REQUIRED[2]
OPTIONAL = ("toolkit_version", "prompt_format", "card")
SAMPLE_SIDE = 8
RTOL, ATOL = 2e-2, 1e-6


def file_hashes(directory: Path, skip: str) -> dict[str, str]:
    """{path relative to `directory`: sha256 hex} of every file under it except `skip`."""
    return {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.relative_to(directory).as_posix() != skip
    }


def check_files(directory: Path, files: dict[str, str]) -> None:
    """Raise CheckpointError naming the first listed file that lies outside `directory`, is
    missing or changed; no file is read before every name is known to be inside."""
    for name in files:
        _check_inside(directory, name)
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing; the checkpoint is incomplete, save it again")
        if sha256_file(path) != expected:
            raise CheckpointError(
                f"{path} does not match the content hash in augment_config.json; the file was "
                "changed or corrupted after saving: restore it or save the checkpoint again"
            )


def _check_inside(directory: Path, name: str) -> None:
    """A listed name is a relative path without `..` whose file (links resolved) is inside."""
    parts = name.split("/")
    root = directory.resolve()
    if (name.startswith("/") or "\\" in name or "\0" in name or ".." in parts or "" in parts
            or root not in (directory / name).resolve().parents):
        raise CheckpointError(
            f"{directory / CONFIG_FILE} lists the file {name!r}, which is not inside the "
            "checkpoint; the checkpoint was tampered with: save it again"
        )


def head_shapes(graft: GraftConfig) -> dict[str, tuple[int | None, ...]]:
    """The head tensors' shapes that the graft config fixes (None: the base's hidden size)."""
    hidden, grid = graft.head.hidden_size, len(graft.head.temperatures)
    return {"mlp.0.weight": (hidden, None), "mlp.0.bias": (hidden,),
            "mlp.2.weight": (hidden, hidden), "mlp.2.bias": (hidden,),
            "mlp.4.weight": (grid, hidden), "mlp.4.bias": (grid,)}


def check_head_shapes(path: Path, shapes: dict[str, list[int]], graft: GraftConfig) -> None:
    """The saved tensors' shapes (from the safetensors header) agree with the graft config,
    so a tampered graft.head.hidden_size is refused before a head is allocated."""
    missing = sorted(set(head_shapes(graft)) - set(shapes))
    if missing:
        raise CheckpointError(
            f"{path} does not match the head config in {CONFIG_FILE}: missing keys {missing}; "
            "save the checkpoint again"
        )
    for name, want in head_shapes(graft).items():
        found = shapes[name]
        if len(found) != len(want) or any(
                w is not None and w != f for w, f in zip(want, found, strict=True)):
            need = ", ".join("d" if w is None else str(w) for w in want)
            raise CheckpointError(
                f"{path} has tensors of the wrong shape ({name} {found} where graft.head in "
                f"{CONFIG_FILE}, hidden_size {graft.head.hidden_size} with "
                f"{len(graft.head.temperatures)} temperatures, needs [{need}]); the checkpoint "
                "was changed after saving: save it again"
            )


def _fixed_entries(weight: torch.Tensor) -> list[float] | None:
    if weight.is_meta:
        return None
    rows = torch.linspace(0, weight.shape[0] - 1, SAMPLE_SIDE).round().long().to(weight.device)
    cols = torch.linspace(0, weight.shape[1] - 1, SAMPLE_SIDE).round().long().to(weight.device)
    return weight.detach()[rows][:, cols].float().cpu().flatten().tolist()


def weight_sample(model) -> dict[str, list[float] | None]:
    """A fixed sample of the input embedding and lm_head weights (None for offloaded ones)."""
    return {
        "embed_tokens": _fixed_entries(model.get_input_embeddings().weight),
        "lm_head": _fixed_entries(model.get_output_embeddings().weight),
    }


def check_weights(saved: dict, model, directory: Path, where: str) -> None:
    """Raise CheckpointError when the base's sampled weights differ from the grafted ones."""
    found = weight_sample(model)
    for name, values in saved.items():
        now = found.get(name)
        if values is None or now is None:
            continue
        a, b = torch.tensor(values), torch.tensor(now)
        if a.shape != b.shape or not torch.allclose(a, b, rtol=RTOL, atol=ATOL):
            raise CheckpointError(
                f"weight fingerprint mismatch: the head in {directory} was grafted on a base "
                f"model with other {name} weights than the one at {where} (same architecture, "
                "different weights); load it with the base it was grafted on"
            )


def parse_config(data: Any, path: Path) -> tuple[GraftConfig, DecodingConfig]:
    """Check the format version and keys of augment_config.json; return its typed sections."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object; the checkpoint is corrupted")
    version = data.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"{path}: format_version={version!r} is not a format this toolkit wrote; point at a "
            "directory written by AugmentedModel.save_pretrained"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version}, newer than this toolkit reads (up to "
            f"{FORMAT_VERSION}); upgrade the toolkit to load it"
        )
    missing = [k for k in REQUIRED[version] if k not in data]
    unknown = sorted(set(data) - set(REQUIRED[version]) - set(OPTIONAL))
    if missing or unknown:
        what = "; ".join(p for p in (missing and f"lacks {', '.join(missing)}",
                                     unknown and f"has unknown key(s) {', '.join(unknown)}") if p)
        raise CheckpointError(f"{path} {what}; the checkpoint is corrupted, save it again")
    _check_plain(data, path)
    _check_keys(data["graft"], GraftConfig, "graft", path, require=True)
    _check_keys(data["decoding"], DecodingConfig, "decoding", path, require=False)
    _check_plugins(data["decoding"].get("plugins", {}), path)
    return _build(GraftConfig, data["graft"], "graft", path), _build(
        DecodingConfig, data["decoding"], "decoding", path)


def _check_plugins(plugins: Any, path: Path) -> None:
    """Every plugin method the checkpoint's decoding names must be registered here."""
    if not isinstance(plugins, dict) or not all(isinstance(v, dict) for v in plugins.values()):
        raise CheckpointError(f"{path}: decoding.plugins is malformed; the checkpoint is corrupted")
    registered = {m.name for m in methods.all_methods()}
    for name in plugins:
        if name not in registered:
            raise CheckpointError(
                f"{path} decodes with the method {name!r}, which is not registered here: "
                f"install the package that provides it (entry point group "
                f"{methods.ENTRY_POINT_GROUP}) or register it before loading"
            )


def _check_plain(data: dict, path: Path) -> None:
    fp = data["base_fingerprint"]
    problems = {
        "base": not isinstance(data["base"], str) or "\0" in data["base"],
        "base_fingerprint": not (isinstance(fp, dict) and isinstance(fp.get("sha256"), str)
                                 and isinstance(fp.get("keys"), dict)),
        "files": not isinstance(data.get("files", {}), dict)
        or not all(isinstance(v, str) and "\0" not in k for k, v in data.get("files", {}).items()),
        "weight_fingerprint": not _is_sample(data.get("weight_fingerprint", {})),
        "prompt_format": data.get("prompt_format", CHAT) not in CONVENTIONS,
    }
    for key, bad in problems.items():
        if bad:
            raise CheckpointError(f"{path}: {key} is malformed; the checkpoint is corrupted")


def _is_sample(value: Any) -> bool:
    """{name: a list of numbers, or None}, as `weight_sample` writes."""
    def numbers(values: Any) -> bool:
        return values is None or (isinstance(values, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))

    return isinstance(value, dict) and all(numbers(v) for v in value.values())


def _check_keys(value: Any, schema: type, key: str, path: Path, require: bool) -> None:
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{path}: {key} must be a mapping of {schema.__name__} keys, not {value!r}; the "
            "checkpoint is corrupted, save it again"
        )
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for name in sorted(set(value) - set(fields)):
        raise CheckpointError(
            f"{path}: unknown key {key}.{name}; valid keys: {', '.join(fields)}; the checkpoint "
            "was not written by this toolkit or is corrupted"
        )
    for name in fields:
        if name not in value:
            if require:
                raise CheckpointError(
                    f"{path} lacks {key}.{name}; the checkpoint is incomplete, save it again"
                )
            continue
        if dataclasses.is_dataclass(hints[name]):
            _check_keys(value[name], hints[name], f"{key}.{name}", path, require)


def _build(schema: type, value: dict, key: str, path: Path) -> Any:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), value))
    except OmegaConfBaseException as err:
        where = f"{key}.{err.full_key}" if getattr(err, "full_key", None) else key
        text = (getattr(err, "msg", None) or str(err)).splitlines()[0]
        raise CheckpointError(f"{path}: bad value for {where} ({text}); save it again") from None
    except ToolkitError as err:
        raise CheckpointError(f"{path}: {err}; save the checkpoint again") from None
