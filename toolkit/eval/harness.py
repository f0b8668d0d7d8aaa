"""An lm-evaluation-harness (0.4.x) model backend: `--model surgery`.

`SurgeryLM` is an `HFLM` whose log-likelihoods come from SLED- or DoLa-rewritten logits and whose
generations run through `AugmentedModel.generate` (the pattern of `lm_eval/models/hf_steered.py`).
Only the continuation positions are rewritten: the tap projects the candidate layers at those
positions alone, so early logits never become (B, T, N, V) over the whole context.

lm-eval resolves `--model` from its registry, so this module must be imported first. From the
shell, run lm-eval through it (it registers the backend, then hands over to lm-eval's own CLI):

    python -m toolkit.eval.harness run --model surgery \\
        --model_args checkpoint=checkpoints/run,sled=True --tasks TASK --device cpu

From Python: `import toolkit.eval.harness` and then `lm_eval.simple_evaluate(model="surgery", ...)`,
or pass `SurgeryLM(...)` itself as `model=`.

model_args: `checkpoint` (an AugmentedModel checkpoint) or `pretrained` (a base model directory
or Hub id, grafted with the default config); `sled` / `dola` / `contrastive` (any registered
"logits"-stage method; True to enable); any of its options prefixed with its name
(`sled_evolution_scale=20`, `dola_relative_top=0.1`);
`preset` (default `factor`: op_T 1, lower bound -2500, the log-softmax protocol lm-eval scores
with; `none` keeps the checkpoint's values). Everything else goes to `HFLM`.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM, stop_sequences_criteria

from toolkit import methods
from toolkit.errors import ConfigError, ToolkitError
from toolkit.graft.augmented import AugmentedModel
from toolkit.options import apply_preset, with_overrides

NAME = "surgery"
# The methods that rewrite the logits from the early layers (the registry's "logits" stage).
SCORED = tuple(m.name for m in methods.all_methods() if m.stage == "logits")


def _decoding(am: AugmentedModel, preset: str | None, flags: dict[str, Any], options: dict):
    """The model's decoding config with the lm-eval flags and prefixed options applied."""
    overrides: dict[str, Any] = {}
    for name in SCORED:
        current = getattr(am.decoding, name)
        fields = {f.name for f in dataclasses.fields(current)}
        mine = {k.removeprefix(f"{name}_"): v for k, v in options.items()
                if k.startswith(f"{name}_")}
        unknown = sorted(set(mine) - fields)
        if unknown:
            raise ConfigError(f"unknown {name} option(s) {unknown} in model_args; valid: "
                              f"{', '.join(f'{name}_{f}' for f in sorted(fields - {'enabled'}))}")
        enabled = flags.get(name)
        enabled = current.enabled if enabled is None else bool(enabled)
        overrides[name] = dataclasses.replace(current, **mine, enabled=enabled)
    decoding = with_overrides(am.decoding, **overrides)
    if preset and preset != "none":
        decoding = apply_preset(decoding, preset)
    return decoding


@register_model(NAME)
class SurgeryLM(HFLM):
    """HFLM over an AugmentedModel: SLED/DoLa log-likelihoods, generation via its generate()."""

    def __init__(self, checkpoint: str | None = None, pretrained: Any = None,
                 preset: str | None = "factor", **kwargs):
        flags = {name: kwargs.pop(name, None) for name in SCORED}
        prefixes = tuple(f"{name}_" for name in SCORED)
        options = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith(prefixes)}
        if (checkpoint is None) == (pretrained is None):
            raise ConfigError("give exactly one of checkpoint=DIR (an AugmentedModel checkpoint) "
                              "or pretrained=DIR_OR_HUB_ID in --model_args")
        if isinstance(pretrained, AugmentedModel):
            am = pretrained
        elif checkpoint is not None:
            am = AugmentedModel.from_pretrained(checkpoint)
        else:
            am = AugmentedModel.graft(pretrained)
        self.am = am
        self.decoding = _decoding(am, preset, flags, options)
        self._method = next((methods.get(n) for n in SCORED
                             if getattr(self.decoding, n).enabled), None)
        self._spans: dict[tuple[int, ...], int] | None = None
        kwargs.setdefault("device", str(am.base.device))
        super().__init__(pretrained=am.base, tokenizer=am.tokenizer, **kwargs)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        """Remember each request's continuation length, keyed by the model input HFLM builds
        from it, so `_model_call` knows which positions to rewrite."""
        self._spans = {}
        for _, context, continuation in requests:
            key = tuple((context + continuation)[-(self.max_length + 1):][:-1])
            self._spans[key] = max(self._spans.get(key, 0), len(continuation))
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        finally:
            self._spans = None

    def _span(self, row: torch.Tensor) -> tuple[int, int]:
        """(input length, continuation length) of a right-padded input row."""
        ids = row.tolist()
        end = len(ids)
        while end > 0:
            if tuple(ids[:end]) in self._spans:
                return end, self._spans[tuple(ids[:end])]
            if ids[end - 1] != 0:
                break
            end -= 1
        raise RuntimeError("an lm-eval input row matches no request; cannot locate its "
                           "continuation")

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        if self._method is None or self._spans is None or attn_mask is not None:
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        spans = [self._span(row) for row in inps]
        width = max(n for _, n in spans)
        positions = torch.zeros((len(spans), width), dtype=torch.long, device=inps.device)
        valid = torch.zeros_like(positions, dtype=torch.bool)
        for i, (length, n) in enumerate(spans):
            positions[i] = length - 1
            positions[i, :n] = torch.arange(length - n, length)
            valid[i, :n] = True
        with torch.no_grad(), self.am.tap.capture(last_only=False):
            logits = self.model(inps).logits
            early = self.am.tap.early_logits(positions=positions)
        rows = torch.arange(len(spans), device=inps.device)[:, None].expand_as(positions)
        final = logits[rows[valid], positions[valid]].float()
        options = getattr(self.decoding, self._method.name)
        evolved, _ = self._method.logits(final, early[valid].to(final.device).float(), options,
                                         self.am.tap.candidate_layers)
        logits = logits.clone()
        logits[rows[valid], positions[valid]] = evolved.to(logits.dtype)
        return logits

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        """lm-eval's generation request through `AugmentedModel.generate` (our processors)."""
        temperature = generation_kwargs.pop("temperature", 0.0)
        do_sample = bool(generation_kwargs.pop("do_sample", None)) and temperature != 0.0
        if do_sample:
            generation_kwargs["temperature"] = temperature
        mask = generation_kwargs.pop("attention_mask", None)
        criteria = stop_sequences_criteria(self.tokenizer, stop, context.shape[1],
                                           context.shape[0])
        return self.am.generate(context, mask, decoding=self.decoding, do_sample=do_sample,
                                max_length=max_length, stopping_criteria=criteria,
                                pad_token_id=self.tokenizer.pad_token_id, **generation_kwargs)


def main() -> int:
    """`python -m toolkit.eval.harness ARGS`: lm-eval's CLI with the `surgery` backend. A
    ToolkitError (a missing checkpoint, a Hub id offline, ...) is one `error:` line and exit
    code 2, as from cli.py."""
    from lm_eval.__main__ import cli_evaluate

    try:
        cli_evaluate()
    except ToolkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
