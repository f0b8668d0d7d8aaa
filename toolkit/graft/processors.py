"""transformers `LogitsProcessor`s for the registered decoding methods and the temperature.

`EarlyExitLogitsProcessor` runs any "logits"-stage method of `toolkit.methods` (SLED, DoLa,
...) and `FilterLogitsProcessor` any "filter"-stage one; `SledLogitsProcessor` is the first
with the method filled in.

`TopNSigmaLogitsProcessor` needs nothing else and works with any model's `generate()`. SLED,
DoLa and the adaptive temperature read the newest position from an `EarlyExitTap`, so the
`generate()` call must run inside `tap.capture(last_only=True)`:

    tap = EarlyExitTap(model, layers="all")
    with tap.capture(last_only=True):
        model.generate(ids, logits_processor=LogitsProcessorList(
            [SledLogitsProcessor(tap, SledOptions(enabled=True))]))

With `record=True` a processor keeps one (B, ...) tensor per step in `self.records`.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, RepetitionPenaltyLogitsProcessor

from toolkit import methods
from toolkit.core.errors import ConfigError, NonFiniteLogitsError
from toolkit.decoding import apply_temperature, top_n_sigma
from toolkit.graft.layers import candidate_layers
from toolkit.methods.options import SledOptions


class FiniteLogitsCheck(LogitsProcessor):
    """Stop with a clear error when a step's final logits hold NaN or +inf, or a row has every
    token at -inf: one max-reduction per step (NaN propagates through it), scores unchanged."""

    def __init__(self) -> None:
        self.step = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        self.step += 1
        top = scores.amax(-1)
        if not bool(torch.isfinite(top).all()):
            rows = (~torch.isfinite(top)).nonzero().flatten().tolist()
            raise NonFiniteLogitsError(
                f"the model's logits at generation step {self.step} are not finite (NaN, +inf "
                f"or all -inf) in batch row(s) {rows[:8]}; its weights are broken or overflow in "
                "this dtype (try model.dtype=float32)"
            )
        return scores


class TopNSigmaLogitsProcessor(LogitsProcessor):
    """Keep tokens whose logit is >= max - n * std (docs/methods.md section 4); the rest become -inf."""

    def __init__(self, n: float = 1.0):
        self.n = float(n)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return top_n_sigma(scores, self.n)


class TemperatureLogitsProcessor(LogitsProcessor):
    """Divide by a fixed temperature; temperature 0 makes each row one-hot on its argmax."""

    def __init__(self, temperature: float):
        self.temperature = float(temperature)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return apply_temperature(scores, self.temperature)


class PromptAwareRepetitionPenalty(RepetitionPenaltyLogitsProcessor):
    """transformers' repetition penalty, blind to each row's left padding: the first
    `prompt_ignore_length[b]` ids of row b do not count. The padding follows rows that generate()
    repeats (num_return_sequences, beams). Ignored ids are replaced by the row's last id, which
    is penalised anyway, so this needs no tensor support from transformers' own class."""

    def __init__(self, penalty: float, prompt_ignore_length: torch.Tensor):
        super().__init__(penalty)
        self.padding = prompt_ignore_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        pad = self.padding.to(input_ids.device)
        if pad.shape[0] != input_ids.shape[0]:
            pad = pad.repeat_interleave(input_ids.shape[0] // pad.shape[0])
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        ignored = positions[None, :] < pad[:, None]
        ids = torch.where(ignored, input_ids[:, -1:].expand_as(input_ids), input_ids)
        return super().__call__(ids, scores)


class EarlyExitLogitsProcessor(LogitsProcessor):
    """Runs a registered "logits"-stage method (SLED, DoLa, ...) on the raw logits, with the
    tap's early logits of the newest position.

    The method's candidate layers are the tap's; its `layers` option, when set, must name the
    same layers (build the tap with them). Records (with `record=True`): the method's per-step
    record, e.g. SLED's layer weights (B, N) or DoLa's chosen layer number (B,).
    """

    def __init__(self, tap, method, options, record: bool = False):
        self.tap = tap
        self.method = method
        self.options = options
        self.record = record
        self.records: list[torch.Tensor] = []
        layers = method.layers_of(options)
        if layers is not None:
            key = f"{method.name}.{method.layers_key}"
            wanted = candidate_layers(layers, tap.num_layers, tap.parts.tied, key=key)
            if wanted != list(tap.candidate_layers):
                raise ConfigError(
                    f"{key}={layers!r} selects layers {wanted}, but the tap captures "
                    f"{list(tap.candidate_layers)}; build the tap with layers={wanted}"
                )

    @property
    def layers(self) -> list[int]:
        return list(self.tap.candidate_layers)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        early = self.tap.early_logits(reuse=True).to(device=scores.device, dtype=scores.dtype)
        logits, step_record = self.method.logits(scores, early, self.options, self.layers)
        if self.record and step_record is not None:
            self.records.append(step_record)
        return logits


class SledLogitsProcessor(EarlyExitLogitsProcessor):
    """SLED (docs/methods.md section 2) on the raw logits, over all of the tap's candidate layers.

    Records (with `record=True`): per-layer weights (B, N) per step.
    """

    def __init__(self, tap, options: SledOptions | None = None, record: bool = False):
        super().__init__(tap, methods.get("sled"), options or SledOptions(enabled=True), record)


class FilterLogitsProcessor(LogitsProcessor):
    """Runs a registered "filter"-stage method (e.g. top-n-sigma) on the warped logits, or a
    "temperature"-stage method that has a per-step function (EDT) in the temperature's place."""

    def __init__(self, method, options):
        self.method = method
        self.options = options

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return self.method.logits(scores, self.options)


class AdaptiveTemperatureLogitsProcessor(LogitsProcessor):
    """Temperature chosen by the AdaptiveDecoder head from the final-norm hidden state.

    `per_token=False` (sequence level): chosen once, at the first step, from the last prompt
    token, and kept for the whole reply. `per_token=True`: chosen anew at every step.
    `sample=True` draws the grid index from the head's distribution with `generator` (a
    `RowSeeds`: each prompt's rows with their own).
    Records: grid indices (B,) per step in `self.records` (always kept; they are tiny).
    """

    def __init__(self, tap, head, *, per_token: bool, sample: bool = False,
                 generator: torch.Generator | RowSeeds | None = None):
        self.tap = tap
        self.head = head
        self.per_token = per_token
        self.sample = sample
        self.generator = generator
        self.records: list[torch.Tensor] = []
        self._index: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self._index is None or self.per_token:
            self._index = self._choose()
        self.records.append(self._index)
        temperature = self.head.temperatures[self._index].to(scores.device)
        return apply_temperature(scores, temperature)

    def _choose(self) -> torch.Tensor:
        weight = next(self.head.parameters())
        hidden = self.tap.final_hidden().to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            if isinstance(self.generator, RowSeeds):
                return torch.cat([self.head.choose(hidden[rows], sample=self.sample, generator=g)
                                  for rows, g in self.generator.blocks()])
            return self.head.choose(hidden, sample=self.sample, generator=self.generator)


class RowSeeds:
    """One random stream per prompt: a `torch.Generator` seeded with each prompt's seed, drawing
    for that prompt's rows (`rows_per_seed` of them: `num_return_sequences`, adjacent as
    transformers expands them). A prompt's draws are then those of the same prompt decoded
    alone with `seed=` its seed: a new generator seeded s gives the stream `torch.manual_seed(s)`
    gives the global one."""

    def __init__(self, seeds: list[int], rows_per_seed: int, device: torch.device | str):
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.rows_per_seed = rows_per_seed

    def blocks(self) -> list[tuple[slice, torch.Generator]]:
        """(rows, generator) per prompt."""
        n = self.rows_per_seed
        return [(slice(i * n, (i + 1) * n), g) for i, g in enumerate(self.generators)]


class SeededSampling(LogitsProcessor):
    """The draw of a sampled call with one seed per prompt, made here with `RowSeeds` because
    transformers draws every row from the global stream: each row's token is drawn from the
    softmax of its final scores, as transformers draws it, and the scores become 0 at that token
    and -inf elsewhere, so transformers' own draw takes it. Put it last: it sees the scores
    transformers would sample from."""

    def __init__(self, seeds: RowSeeds):
        self.seeds = seeds

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores, dim=-1)
        tokens = torch.cat([torch.multinomial(probs[rows].to(g.device), 1, generator=g)
                            for rows, g in self.seeds.blocks()]).to(scores.device)
        return torch.full_like(scores, -float("inf")).scatter_(1, tokens, 0.0)
