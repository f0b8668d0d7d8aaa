"""The toolkit's decoding methods as vLLM logits processors (the V1 model runner's interface).

Both are registered through the entry-point group `vllm.logits_processors`, so they are loaded
for every model vLLM serves; a request uses them through its `extra_args` (`vllm_xargs`), and a
model-surgery checkpoint's saved decoding applies to requests that do not say otherwise
(`toolkit.serving.plan`). Requests with different methods share a batch: rows are grouped by
their method and options, and each group runs the method's own function from the registry.

- `LogitsStage` (not argmax-invariant: it runs for greedy rows too) rewrites the raw logits
  with the request's logits-stage method, reading the early layers' states that the model
  published for this step (`toolkit.serving.state`).
- `SamplingStage` (argmax-invariant: vLLM runs it after the request's temperature, for sampling
  rows only) applies the temperature stage (the adaptive head, per reply or per token) and the
  filters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from vllm.v1.sample.logits_processor import LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from toolkit.decoding import apply_temperature
from toolkit.serving import state
from toolkit.serving.plan import RequestPlan, Step, request_plan

_GREEDY = 1e-5  # vLLM's threshold: a request below this temperature decodes greedily


@dataclass
class _Row:
    """One request in the batch: its plan and what it needs between steps."""

    plan: RequestPlan
    output: list[int]
    sampled: bool
    generator: torch.Generator | None = None
    chosen: torch.Tensor | None = field(default=None, repr=False)


class _Requests(LogitsProcessor):
    """Shared bookkeeping: the rows of the persistent batch that this stage acts on."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        self.model_path = vllm_config.model_config.model
        self.device = device
        self.rows: dict[int, _Row] = {}

    def update_state(self, batch_update) -> None:
        process_dict_updates(self.rows, batch_update, self._row)

    def _row(self, params, prompt_ids, output_ids) -> _Row | None:
        plan = request_plan(params.extra_args, state.served(self.model_path))
        if not self.wanted(plan):
            return None
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        return _Row(plan, output_ids, params.temperature >= _GREEDY, generator)

    def wanted(self, plan: RequestPlan) -> bool:
        raise NotImplementedError


def _groups(rows: dict[int, _Row], step_of) -> list[tuple[Step, list[int]]]:
    """Rows with the same step (method and options), as (step, row indices)."""
    grouped: dict[tuple, tuple[Step, list[int]]] = {}
    for index, row in rows.items():
        for step in step_of(row):
            grouped.setdefault(step.key, (step, []))[1].append(index)
    return list(grouped.values())


class LogitsStage(_Requests):
    """The request's logits-stage method on the raw logits (SLED, DoLa, contrastive, ...)."""

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        """Refuse a request whose `extra_args` are invalid for the served model (HTTP 400)."""
        request_plan(sampling_params.extra_args, state.served())

    def is_argmax_invariant(self) -> bool:
        return False

    def wanted(self, plan: RequestPlan) -> bool:
        return plan.logits is not None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        states = state.current(logits.shape[0])
        for step, rows in _groups(self.rows, lambda row: [row.plan.logits]):
            index = torch.tensor(rows, device=logits.device)
            early = states.model.early_logits(states, index, list(step.layers))
            out, _ = step.method.logits(logits[index], early.to(logits.dtype), step.options,
                                        list(step.layers))
            logits[index] = out
        return logits


class SamplingStage(_Requests):
    """The temperature stage (the adaptive head or a temperature method), then the filters."""

    def is_argmax_invariant(self) -> bool:
        return True

    def wanted(self, plan: RequestPlan) -> bool:
        return bool(plan.adaptive or plan.temperature or plan.filters)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        sampled = {i: row for i, row in self.rows.items() if row.sampled}
        if not sampled:
            return logits
        head_rows = [i for i, row in sampled.items() if row.plan.adaptive is not None]
        if head_rows:
            index = torch.tensor(head_rows, device=logits.device)
            temperatures = self._head_temperatures(logits.shape[0], head_rows, sampled)
            logits[index] = apply_temperature(logits[index], temperatures.to(logits.device))
        for stage in (lambda row: row.plan.temperature, lambda row: row.plan.filters):
            for step, rows in _groups(sampled, stage):
                index = torch.tensor(rows, device=logits.device)
                logits[index] = step.method.logits(logits[index], step.options)
        return logits

    def _head_temperatures(self, batch: int, rows: list[int],
                           sampled: dict[int, _Row]) -> torch.Tensor:
        """The head's temperature for each row: chosen once from the last prompt token
        (sequence level: kept from the first generated token on; before it, while a prompt is
        prefilled in chunks, each chunk's last token replaces the choice) or at every token."""
        states = state.current(batch)
        head = states.model.surgery_head
        per_token = states.model.surgery.graft.head.level == "token"
        fresh = [i for i in rows if per_token or sampled[i].chosen is None or not sampled[i].output]
        for i in fresh:  # one row at a time: each request draws with its own generator
            row = sampled[i]
            hidden = states.final[i: i + 1].to(head.temperatures.device, torch.float32)
            with torch.no_grad():
                row.chosen = head.choose(hidden, sample=row.plan.adaptive.choice == "sample",
                                         generator=row.generator)
        return head.temperatures[torch.cat([sampled[i].chosen for i in rows])]
