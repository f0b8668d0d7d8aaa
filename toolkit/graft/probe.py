"""The graft-time check: on a few tokens, the tap's last-layer logits must be the model's own.

Discovery (`toolkit.graft.families`) finds the parts and reads the logit transforms from the
config; this check proves them on the model at hand, so an architecture that computes its
logits otherwise is refused with one line instead of being decoded silently wrong. It runs one
forward pass of `PROBE_TOKENS` tokens without grad or cache, in eval mode, with torch's RNG
state restored afterwards and every module's training flag put back.
"""

from __future__ import annotations

import torch
from torch import nn

from toolkit.core.errors import UnsupportedArchitectureError
from toolkit.graft.families import model_parts
from toolkit.graft.tap import EarlyExitTap

PROBE_TOKENS = 4
# Largest allowed |tap - model| relative to max(1, max |model logits|), by the model's dtype.
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9, torch.float16: 1e-2, torch.bfloat16: 3e-2}


def check_tap(model: nn.Module) -> float:
    """Raise UnsupportedArchitectureError unless the tap at layer L reproduces `model`'s logits
    on a short probe and reads a (batch, tokens, hidden) state at every layer; return the max
    abs difference seen."""
    parts = model_parts(model)
    # project() below gets the final-norm output itself: no second norm, whatever the default
    final_tap = EarlyExitTap(model, layers=list(range(parts.num_layers + 1)), early_exit_norm=False)
    weight = parts.lm_head.weight
    ids = torch.arange(1, PROBE_TOKENS + 1).remainder(weight.shape[0]).unsqueeze(0)
    modes = [(module, module.training) for module in model.modules()]
    devices = [d for d in {p.device for p in model.parameters()} if d.type == "cuda"]
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), final_tap.capture(False):
            model.eval()
            logits = model(input_ids=ids.to(model.device), use_cache=False).logits
            shapes = final_tap.state_shapes()
            early = final_tap.project(final_tap.final_hidden())  # layer L: lm_head and transforms
    finally:
        for module, training in modes:
            module.training = training
    odd = {layer: shape for layer, shape in shapes.items()
           if shape != tuple(final_tap.final_hidden().shape)}
    if odd:
        layer, shape = next(iter(odd.items()))
        raise UnsupportedArchitectureError(
            f"model type {parts.model_type!r} ({type(model).__name__}): the hidden state "
            f"entering decoder layer {layer} is shaped {shape}, not (batch, tokens, hidden) like "
            "its last hidden state, so the tap cannot read it")
    ours, theirs = early.float(), logits.float().to(early.device)
    diff = _max_diff(ours, theirs)
    tolerance = TOLERANCE.get(weight.dtype, 1e-2) * max(1.0, theirs.abs().nan_to_num().max().item())
    if ours.shape != theirs.shape or not diff <= tolerance:
        raise UnsupportedArchitectureError(
            f"model type {parts.model_type!r} ({type(model).__name__}): the tap's last-layer "
            f"logits differ from the model's own (max abs diff {diff:.3g}, tolerance "
            f"{tolerance:.3g} for {weight.dtype}); this architecture computes its logits in a "
            "way the toolkit cannot reproduce")
    return diff


def _max_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    if ours.shape != theirs.shape:
        return float("inf")
    same_nan = ours.isnan() & theirs.isnan()
    return (ours - theirs).abs().masked_fill(same_nan, 0).max().item()
