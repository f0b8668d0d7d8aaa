"""Temperature, sampling, and per-temperature token log-probabilities (docs/methods.md section 5).

Temperature 0 means greedy everywhere: the row becomes 0 at its argmax (first one on ties) and
-inf elsewhere, a one-hot distribution after softmax; nothing is ever divided by zero.
"""

from __future__ import annotations

import math

import torch


def _check_logits(logits: torch.Tensor, *, batched: bool = True) -> None:
    if batched and logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V); got {tuple(logits.shape)}")
    if logits.dim() < 1 or not logits.is_floating_point():
        raise ValueError(
            f"logits must be a floating-point tensor with a vocabulary dimension; "
            f"got {logits.dtype} of shape {tuple(logits.shape)}"
        )


def _check_temperatures(name: str, temperature: torch.Tensor) -> None:
    bad = ~(torch.isfinite(temperature) & (temperature >= 0))
    if bool(bad.any()):
        raise ValueError(
            f"{name} must be finite and >= 0 (0 means greedy); got {temperature[bad].tolist()[:8]}"
        )


def _row_temperatures(temperature, batch: int, device: torch.device) -> torch.Tensor:
    """temperature as a float32 (B, 1) or (1, 1) tensor, checked."""
    if isinstance(temperature, torch.Tensor):
        t = temperature.reshape(1) if temperature.dim() == 0 else temperature
        if t.dim() != 1 or t.shape[0] not in (1, batch):
            raise ValueError(
                f"temperature must be a float or a tensor of shape (B,)=({batch},); "
                f"got shape {tuple(temperature.shape)}"
            )
        t = t.to(device=device, dtype=torch.float32).unsqueeze(-1)
    elif isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        t = torch.full((1, 1), float(temperature), dtype=torch.float32, device=device)
    else:
        raise ValueError(
            f"temperature must be a float or a tensor of shape (B,); got {temperature!r}"
        )
    _check_temperatures("temperature", t)
    return t


def _greedy_rows(logits: torch.Tensor) -> torch.Tensor:
    """0 at the argmax of each row (over the last dim), -inf elsewhere."""
    hot = torch.full_like(logits, float("-inf"))
    return hot.scatter_(-1, logits.argmax(-1, keepdim=True), 0.0)


def apply_temperature(logits: torch.Tensor, temperature) -> torch.Tensor:
    """logits / temperature per row: (B, V), float or (B,) -> (B, V) in logits' dtype.

    Rows with temperature 0 become 0 at the argmax and -inf elsewhere. Negative temperatures raise.
    A finite logit stays finite: a quotient beyond the dtype's range (fp16 logits at a low
    temperature) is clamped to its largest finite magnitude.
    """
    _check_logits(logits)
    t = _row_temperatures(temperature, logits.shape[0], logits.device)
    x = logits.float()
    greedy = t == 0
    if bool(greedy.all()):
        return _greedy_rows(x).to(logits.dtype)
    if not bool(greedy.any()):
        quotient = (x / t).to(logits.dtype)
        if not bool(torch.isinf(quotient).any()):  # nothing overflowed and no -inf logits
            return quotient
    scaled = x / torch.where(greedy, torch.ones_like(t), t)
    top = torch.finfo(logits.dtype).max
    scaled = torch.where(torch.isfinite(x), scaled.clamp(-top, top), scaled)
    return torch.where(greedy, _greedy_rows(x), scaled).to(logits.dtype)


def sample_tokens(
    logits: torch.Tensor, *, do_sample: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One token per row: (B, V) -> (B,) long. Samples from softmax(logits) with
    torch.multinomial and the given generator (same device as logits), or takes the argmax
    when do_sample is False."""
    _check_logits(logits)
    if not do_sample:
        return logits.argmax(-1)
    top = logits.float().amax(-1)
    if not bool(torch.isfinite(top).all()):
        bad = (~torch.isfinite(top)).nonzero().flatten().tolist()
        raise ValueError(
            f"logits rows {bad} have no finite maximum (all -inf, or +inf/NaN); cannot sample"
        )
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def temperature_log_probs(
    logits: torch.Tensor, tokens: torch.Tensor, temperatures: torch.Tensor
) -> torch.Tensor:
    """log softmax(logits / tau)[token] for every tau of a grid: (..., V), (...), (G,) -> (..., G).

    tau = 0 gives the log of the greedy one-hot: 0 where the token is the argmax (first one on
    ties), -inf elsewhere. Rows without a finite logit give -inf. Computed as
    (x - max) / tau - logsumexp((x - max) / tau), so large logits cannot overflow; the result is
    float32 (float64 for float64 logits) and differentiable in logits.
    """
    _check_logits(logits, batched=False)
    if tuple(tokens.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"tokens shape {tuple(tokens.shape)} must equal logits shape without its last "
            f"dimension; logits has shape {tuple(logits.shape)}"
        )
    if temperatures.dim() != 1 or temperatures.shape[0] == 0:
        raise ValueError(
            f"temperatures must be a non-empty 1-D tensor (G,); got shape {tuple(temperatures.shape)}"
        )
    _check_temperatures("temperatures", temperatures)
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    top = x.amax(-1, keepdim=True)
    has_finite = torch.isfinite(top)
    shifted = x - torch.where(has_finite, top, torch.zeros_like(top))
    index = tokens.long().unsqueeze(-1)
    picked = shifted.gather(-1, index)
    columns = []
    for tau in temperatures.tolist():
        if tau == 0:
            column = torch.where(x.argmax(-1, keepdim=True) == index, 0.0, -math.inf)
            column = column.to(x.dtype)
        else:
            column = picked / tau - torch.logsumexp(shifted / tau, dim=-1, keepdim=True)
        columns.append(torch.where(has_finite, column, torch.full_like(column, -math.inf)))
    return torch.cat(columns, dim=-1)
