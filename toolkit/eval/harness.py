"""An lm-evaluation-harness (0.4.x) model backend: `--model surgery`.

`SurgeryLM` is an `HFLM` whose log-likelihoods come from SLED- or DoLa-rewritten logits and whose
generations run through `AugmentedModel.generate` (the pattern of `lm_eval/models/hf_steered.py`).
Only the continuation positions are rewritten: the tap projects the candidate layers at those
positions alone, so early logits never become (B, T, N, V) over the whole context.

lm-eval resolves `--model` from its registry, so this module must be imported first. From the
shell, run lm-eval through it (it registers the backend, then hands over to lm-eval's own CLI):

    python -m toolkit.eval.harness run --model surgery \\
        --model_args pretrained=checkpoints/run,sled=True --tasks TASK --device cpu

From Python: `import toolkit.eval.harness` and then `lm_eval.simple_evaluate(model="surgery", ...)`,
or pass `SurgeryLM(...)` itself as `model=`.

model_args: `pretrained` (an AugmentedModel checkpoint directory, or a base model directory or
Hub id, grafted with the default config; lm-eval names its results after it); `sled` / `dola`
(a method with log-probabilities in the registry; True to enable); any of its options prefixed
with its name (`sled_evolution_scale=20`); `preset=checkpoint` to start from the checkpoint's
saved decoding methods and options (without it, nothing is enabled that the model_args do not
enable); `shared_prefix` (default True: requests that share a context run it once into a KV
cache, then only their continuations, `toolkit.eval.harness_prefix`; False runs every whole
context + continuation, as HFLM does; a numeric batch size is needed, `auto` runs the whole
sequences); `imports=MODULE` (several joined by `+`) to import modules that register methods
first, as a recipe's `imports:` does; `dtype` for the model as it loads. HFLM's other keys that
apply to a loaded model go to `HFLM`; a key that only applies when HFLM loads the model itself
(`peft`, `revision`, ...) or that nothing takes is one line naming it (`harness_args`).

The log-likelihoods are proper log-probabilities: at each continuation token, the method's
distribution over the whole vocabulary (`DecodingMethod.log_probs`: for SLED the log_softmax of
the evolved logits with no lower bound, for DoLa the log_softmax of the contrast without the
relative-top filter). The method and its options are logged and written into lm-eval's results
(`config.model_args` and `config.surgery`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM, stop_sequences_criteria

from toolkit import methods
from toolkit.core.errors import ConfigError, ToolkitError
from toolkit.eval import harness_args, harness_prefix
from toolkit.eval.scoring import position_mask
from toolkit.graft.augmented import AugmentedModel
from toolkit.io.layout import CONFIG_FILE
from toolkit.methods.options import DecodingConfig, replacing_saved, with_overrides

NAME = "surgery"


def scored() -> tuple[str, ...]:
    """The methods that rewrite the logits from the early layers (the registry's "logits"
    stage, plugins included); lm-eval scores those with log-probabilities over the whole
    vocabulary (SLED, DoLa)."""
    return tuple(m.name for m in methods.all_methods() if m.stage == "logits")


CONVENTION = ("log-probabilities over the whole vocabulary at each continuation token "
              "(docs/methods.md, section 7)")
log = logging.getLogger(__name__)


def _decoding(am: AugmentedModel, preset: str | None, flags: dict[str, Any], options: dict):
    """Defaults (or the checkpoint's saved decoding with preset=checkpoint) with the lm-eval
    flags and prefixed options applied."""
    if preset not in (None, "checkpoint"):
        raise ConfigError(f"preset={preset!r} in model_args; allowed: checkpoint (the "
                          "checkpoint's saved decoding methods), or leave it out")
    base = am.decoding if preset == "checkpoint" else DecodingConfig()
    asked = {name: bool(value) for name, value in flags.items() if value is not None}
    flags = {**flags, **replacing_saved(base, asked, "the checkpoint (preset=checkpoint)")}
    overrides: dict[str, Any] = {}
    for name in scored():
        current = base.method(name)
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
    decoding = with_overrides(base, **overrides)
    unscored = [m.name for m in methods.active(decoding)
                if m.stage == "logits" and m.log_probs is None]
    if unscored:
        raise ConfigError(f"{unscored[0]} is enabled but has no log-probabilities over the whole "
                          f"vocabulary for lm-eval; disable it, or score it with cli.py eval")
    return decoding


def load_model(pretrained: Any, dtype: Any = None) -> AugmentedModel:
    """An AugmentedModel as given, from a checkpoint directory, or grafted onto a base model;
    `dtype` (lm-eval's model_arg: "bfloat16", "auto", a torch dtype) for the base as it loads."""
    if isinstance(pretrained, AugmentedModel):
        if dtype is not None:
            raise ConfigError("dtype applies when pretrained names a directory or Hub id; "
                              "convert the AugmentedModel with .to(dtype) before passing it")
        return pretrained
    dtype = None if dtype is None else harness_args.dtype_of(dtype)
    if Path(str(pretrained), CONFIG_FILE).is_file():
        return AugmentedModel.from_pretrained(pretrained, dtype=dtype)
    return AugmentedModel.graft(pretrained, dtype=dtype)


# HFLM's warnings for a model passed in, which do not apply here: the backend loaded it
# from pretrained= itself, with the model_args checked (harness_args).
HFLM_NOTES = ("`pretrained` model kwarg is not of type `str`",
              "Passed an already-initialized model through `pretrained`")


@contextlib.contextmanager
def _without(notes: tuple[str, ...]):
    """lm-eval's HFLM logger without the records that start with one of `notes`."""
    logger = logging.getLogger(HFLM.__module__)

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(notes)

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _chat_template_hint(given: str, base: str) -> None:
    """lm-eval warns when model_args name an instruct or chat model and no chat template is
    applied; a checkpoint's name hides its base's, so say it here, naming the base."""
    needs = ("inst", "chat")
    if any(k in base.lower() for k in needs) and not any(k in given.lower() for k in needs):
        log.warning("surgery: %s is grafted onto %s, an instruct or chat variant: without "
                    "--apply_chat_template lm-eval applies no chat template (optionally add "
                    "--fewshot_as_multiturn)", given, base)


@register_model(NAME)
class SurgeryLM(HFLM):
    """HFLM over an AugmentedModel: SLED/DoLa log-likelihoods, generation via its generate()."""

    def __init__(self, pretrained: Any = None, **kwargs):
        if "checkpoint" in kwargs:
            raise ConfigError("model_args checkpoint=DIR is now pretrained=DIR (lm-eval names "
                              "its results after pretrained)")
        if pretrained is None:
            raise ConfigError("give pretrained=DIR_OR_HUB_ID in --model_args (an AugmentedModel "
                              "checkpoint or a base model)")
        self._given = {"pretrained": pretrained, **kwargs}
        if "imports" in kwargs:
            harness_args.import_plugins(kwargs.pop("imports"))
        harness_args.check(self._given, scored())
        preset, shared_prefix = kwargs.pop("preset", None), kwargs.pop("shared_prefix", True)
        flags = {name: kwargs.pop(name, None) for name in scored()}
        prefixes = tuple(f"{name}_" for name in scored())
        options = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith(prefixes)}
        am = load_model(pretrained, kwargs.pop("dtype", None))
        self.am = am
        self.shared_prefix = bool(shared_prefix)
        self.decoding = _decoding(am, preset, flags, options)
        self._method = next((methods.get(n) for n in scored()
                             if self.decoding.method(n).enabled), None)
        self._spans: dict[tuple[int, ...], int] | None = None
        self._name = str(am.base_reference if isinstance(pretrained, AugmentedModel)
                         else pretrained)
        self._given["pretrained"] = self._name
        log.info("surgery: %s on %s; log-likelihoods: %s", self.method_args() or "plain",
                 self._name, CONVENTION if self._method else "the model's own")
        _chat_template_hint(self._name, am.base_reference)
        kwargs.setdefault("device", str(am.base.device))
        with _without(HFLM_NOTES):
            super().__init__(pretrained=am.base, tokenizer=am.tokenizer, **kwargs)

    def method_args(self) -> str:
        """The method and its options as model_args, e.g. 'sled=True,sled_evolution_rate=2.0'
        ('' without a method)."""
        if self._method is None:
            return ""
        options = dataclasses.asdict(self.decoding.method(self._method.name))
        options.pop("enabled")
        return ",".join([f"{self._method.name}=True"]
                        + [f"{self._method.name}_{k}={v}" for k, v in options.items()])

    def get_model_info(self) -> dict:
        """HFLM's info plus the method, written into lm-eval's results config."""
        info = super().get_model_info()
        options = self.decoding.method(self._method.name) if self._method else None
        info["model_args"] = harness_args.as_given(self._given, self.method_args())
        info["surgery"] = {
            "method": self._method.name if self._method else "plain",
            "label": self._method.label(options) if self._method else "plain",
            "options": dataclasses.asdict(options) if options else {},
            "log_likelihood": CONVENTION if self._method else "the model's own",
        }
        return info

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        """With `shared_prefix` (and a numeric batch size), `harness_prefix.loglikelihoods`.
        Otherwise HFLM's, remembering each request's continuation length, keyed by the model
        input HFLM builds from it, so `_model_call` knows which positions to rewrite."""
        batch_size = override_bs or self.batch_size
        if self.shared_prefix and self.backend == "causal" and batch_size != "auto":
            return harness_prefix.loglikelihoods(self, requests, int(batch_size), disable_tqdm)
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
        positions, valid = harness_prefix.scored_positions([self._span(row) for row in inps],
                                                           inps.device)
        with torch.no_grad(), self.am.tap.capture(last_only=False):
            logits = self.model(inps).logits
            early = self.am.tap.early_logits(
                positions=position_mask(positions, valid, inps.shape[1]))
        rows, scored = harness_prefix.method_values(self, logits, early, positions, valid)
        logits = logits.float()
        logits[rows, positions[valid]] = scored
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


def _show_info() -> None:
    """Under lm-eval's CLI, the backend's INFO lines (which method, on what) reach stderr as
    lm-eval's own do; from Python, logging is the caller's to configure."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-8s [surgery] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def main() -> int:
    """`python -m toolkit.eval.harness ARGS`: lm-eval's CLI with the `surgery` backend. A
    ToolkitError (a missing checkpoint, a Hub id offline, ...) is one `error:` line and exit
    code 2, as from cli.py."""
    from lm_eval.__main__ import cli_evaluate

    _show_info()
    try:
        cli_evaluate()
    except ToolkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
