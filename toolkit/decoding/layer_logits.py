"""The argument check of the functions that take final and early-layer logits: shapes (B, V)
and (B, N>=1, V), floating point, matching B and V."""

from __future__ import annotations

import torch


def check_layer_logits(final_logits: torch.Tensor, early_logits: torch.Tensor) -> tuple[int, int]:
    """Raise ValueError unless final is (B, V) and early is (B, N>=1, V), both floating point.

    Returns (B, V).
    """
    if final_logits.dim() != 2:
        raise ValueError(f"final_logits must have shape (B, V); got {tuple(final_logits.shape)}")
    if early_logits.dim() != 3:
        raise ValueError(f"early_logits must have shape (B, N, V); got {tuple(early_logits.shape)}")
    if not (final_logits.is_floating_point() and early_logits.is_floating_point()):
        raise ValueError(
            f"final_logits and early_logits must be floating-point tensors; got "
            f"{final_logits.dtype} and {early_logits.dtype}"
        )
    batch, vocab = final_logits.shape
    if early_logits.shape[0] != batch or early_logits.shape[2] != vocab:
        raise ValueError(
            f"early_logits shape {tuple(early_logits.shape)} does not match final_logits "
            f"{tuple(final_logits.shape)}: B and V must be equal (early_logits is (B, N, V))"
        )
    if early_logits.shape[1] == 0:
        raise ValueError("early_logits has no layers (N = 0); give at least one early layer")
    return batch, vocab
