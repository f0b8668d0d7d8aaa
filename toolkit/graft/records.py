"""What `AugmentedModel.generate(..., return_records=True)` returns, and the reply mask.

Records hold one entry per generation step and batch row. transformers keeps stepping every row
until all rows are done (a finished row gets pad tokens), so the steps after a row's eos are
recorded as well; `reply_mask` marks the real reply tokens (up to and including the first eos)
so callers can drop the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from toolkit import methods


@dataclass
class AugmentedOutput:
    """Generated ids plus per-step records.

    - `sequences` (B, T_prompt + T_new): prompt and reply, as transformers returns them.
    - `reply_mask` (B, T_new) bool: True on the reply's real tokens, up to and including eos.
    - `temperature` (B, T_new) float: the adaptive temperature value used at each step.
    - `layers`: the candidate layer numbers of the early-exit method (None when none is on).
    - `records`: every method's per-step records, under its `record_field`, built-in and plugin
      alike; each also reads as an attribute, None when its method was off:
      `temperature_index` (B, T_new) long, the adaptive temperature's grid index;
      `sled_layer_weights` (B, T_new, N) float, SLED's per-layer weights over `layers`;
      `dola_layer` (B, T_new) long, the layer DoLa contrasted with; a plugin's field.
    - `generate_output`: transformers' output object (scores, logits, ...) when the call passed
      `return_dict_in_generate=True`.
    """

    sequences: torch.Tensor
    reply_mask: torch.Tensor
    temperature: torch.Tensor | None = None
    layers: list[int] | None = None
    generate_output: Any = None
    records: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        """A registered method's record field: its records, or None when it was off."""
        if not name.startswith("_") and name in {m.record_field for m in methods.all_methods()}:
            return self.records.get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def record(self, name: str) -> torch.Tensor | None:
        """A method's stacked records by its `record_field` (None when it was off)."""
        return self.records.get(name)


def reply_mask(replies: torch.Tensor, eos_token_ids: Sequence[int] | None) -> torch.Tensor:
    """(B, T_new) bool: True up to and including the first eos of each row (all True without eos)."""
    if not eos_token_ids:
        return torch.ones_like(replies, dtype=torch.bool)
    eos = torch.as_tensor(list(eos_token_ids), device=replies.device)
    is_eos = torch.isin(replies, eos).long()
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos
    return eos_before == 0


def stack_steps(steps: list[torch.Tensor], num_steps: int) -> torch.Tensor | None:
    """Stack per-step (B, ...) records into (B, T, ...), keeping the first `num_steps` steps."""
    if not steps:
        return None
    return torch.stack(steps[:num_steps], dim=1)
