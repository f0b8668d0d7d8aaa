"""Frozen-LM feature cache for LPO (docs/methods.md section 6): the LM runs once per pair, training never runs it.

For every pair it stores what the head and the losses need:
- sequence level: `prompt_h` (P, d), h at the last prompt token;
  token level: `chosen_h` / `rejected_h` (P, T, d), h_t = the state that produced reply token t;
- `chosen_tau`, `rejected_tau` (P, T) grid indices; `chosen_mask`, `rejected_mask` (P, T) bool;
- `chosen_lp`, `rejected_lp` (P, T, G): log P(y_t | tau) per grid temperature from the model's
  final logits (tau = 0 as a log one-hot), for the `latent` loss;
- `chosen_word_logp`, `rejected_word_logp` (P,): log P(y) at temperature 1, for `tokens`.
The file (safetensors) sits next to the pairs file; its metadata holds a key made of the pairs
file's content hash, a fingerprint of the model and the head's grid and level. A matching, whole
file is reused; any change rebuilds it, and so does damage (a cut-off or unreadable file).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from tqdm.auto import tqdm

from toolkit.decoding import temperature_log_probs
from toolkit.io.staging import replacing
from toolkit.lpo.pairs import read_pairs
from toolkit.sources.base import safetensors_problem

if TYPE_CHECKING:
    from toolkit.graft.augmented import AugmentedModel

CACHE_VERSION = "1"
SIDES = ("chosen", "rejected")


def model_fingerprint(model) -> str:
    """Hash of the base config and a sample of every base and head parameter."""
    digest = hashlib.sha256(model.base.config.to_json_string().encode())
    for module in (model.base, model.head):
        for name, param in module.state_dict().items():
            sample = param.detach().flatten()[:4096].float().cpu().contiguous()
            digest.update(f"{name}{tuple(param.shape)}".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


def cache_path(pairs_path, level: str) -> Path:
    path = Path(pairs_path)
    return path.with_name(f"{path.name}.{level}.features.safetensors")


def cache_key(pairs_path, model, level: str) -> str:
    digest = hashlib.sha256(Path(pairs_path).read_bytes())
    grid = [float(t) for t in model.head.temperatures.tolist()]
    extra = json.dumps([CACHE_VERSION, model_fingerprint(model), grid, level])
    digest.update(extra.encode())
    return digest.hexdigest()


def _right_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


@torch.no_grad()
def _step_log_probs(model, ids, attn, positions, tokens, mask):
    """(lp (B, T, G), word log-prob sums (B,)) from the final logits at `positions`.

    Only the reply positions' logits are kept, on the model's device, before moving to CPU.
    """
    device = model.base.device
    logits = model.base(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
    index = positions.to(logits.device)[..., None].expand(-1, -1, logits.shape[-1])
    step_logits = logits.gather(1, index).float()
    tokens = tokens.to(logits.device)
    grid = model.head.temperatures.detach().float().to(logits.device)
    lp = temperature_log_probs(step_logits, tokens, grid).cpu().masked_fill(~mask[..., None], 0.0)
    word = torch.log_softmax(step_logits, -1).gather(-1, tokens[..., None]).squeeze(-1).cpu()
    return lp, torch.where(mask, word, torch.zeros_like(word)).sum(-1)


@torch.no_grad()
def _side_features(model, batch: list[dict], side: str, width: int, level: str) -> dict:
    prompts = [p["prompt_ids"] for p in batch]
    replies = [p[f"{side}_ids"] for p in batch]
    ids, attn = _right_pad([a + b for a, b in zip(prompts, replies, strict=True)])
    hidden = model.head_features(ids, attn).cpu()
    starts = torch.tensor([len(p) - 1 for p in prompts])
    positions = (starts[:, None] + torch.arange(width)[None, :]).clamp(max=ids.shape[1] - 1)
    lengths = torch.tensor([len(r) for r in replies])
    mask = torch.arange(width)[None, :] < lengths[:, None]
    tokens = ids.gather(1, (positions + 1).clamp(max=ids.shape[1] - 1)).masked_fill(~mask, 0)
    lp, word = _step_log_probs(model, ids, attn, positions, tokens, mask)
    tau = torch.zeros((len(batch), width), dtype=torch.long)
    for i, pair in enumerate(batch):
        tau[i, : len(pair[f"{side}_tau"])] = torch.tensor(pair[f"{side}_tau"], dtype=torch.long)
    out = {f"{side}_tau": tau, f"{side}_mask": mask, f"{side}_lp": lp, f"{side}_word_logp": word}
    if level == "token":
        out[f"{side}_h"] = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))
    elif side == "chosen":
        out["prompt_h"] = hidden[torch.arange(len(batch)), starts]
    return out


def compute_features(model, batch: list[dict], level: str, width: int | None = None) -> dict:
    """Features of a list of pair records, reply positions padded to `width` (default: longest)."""
    if width is None:
        width = max(max(len(p["chosen_ids"]), len(p["rejected_ids"])) for p in batch)
    width = max(width, 1)
    features = {}
    for side in SIDES:
        features.update(_side_features(model, batch, side, width, level))
    return features


def build_cache(model: AugmentedModel, pairs_path: str | Path, level: str | None = None,
                batch_size: int = 16, progress: bool = True) -> Path:
    """Compute (or reuse) the feature cache of a pairs file.

    Args:
        model: the AugmentedModel whose frozen LM gives the head's inputs.
        pairs_path: the pairs JSONL; the cache is written beside it.
        level: "sequence" or "token" (default: the head's own level).
        batch_size: pairs per forward pass.
        progress: show a progress bar.

    Returns:
        The cache file's path (`<pairs>.<level>.features.safetensors`).
    """
    level = level or model.graft_config.head.level
    path = cache_path(pairs_path, level)
    key = cache_key(pairs_path, model, level)
    if _reusable(path, key):
        return path
    pairs = read_pairs(pairs_path, model.vocab_size, int(model.head.temperatures.numel()),
                       model.max_positions)
    width = max(1, max(max(len(p["chosen_ids"]), len(p["rejected_ids"])) for p in pairs))
    parts: dict[str, list[torch.Tensor]] = {}
    for start in tqdm(range(0, len(pairs), batch_size), disable=not progress, desc="features"):
        chunk = compute_features(model, pairs[start : start + batch_size], level, width)
        for name, value in chunk.items():
            parts.setdefault(name, []).append(value)
    tensors = {name: torch.cat(values).contiguous() for name, values in parts.items()}
    metadata = {"key": key, "level": level, "pairs": str(len(pairs)), "version": CACHE_VERSION}
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _reusable(path: Path, key: str) -> bool:
    """Whether `path` is a whole cache file made for `key`; a damaged one (cut off, not
    safetensors) is not, and is rebuilt."""
    if not path.is_file() or safetensors_problem(path):
        return False
    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("key") == key
    except (SafetensorError, OSError, ValueError):
        return False


def load_cache(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a cache file."""
    with safe_open(str(path), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
    return load_file(str(path)), metadata
