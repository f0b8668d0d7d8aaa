"""Every logits- and filter-stage method of the registry (SLED, DoLa, contrastive decoding,
top-n-sigma, typical sampling, and registered plugins) for a plain transformers model, through
transformers 5's `generate(custom_generate=...)` hook; no AugmentedModel needed.

A callable (transformers prepares inputs, cache and stopping criteria, then calls it):

    from toolkit.graft.custom_generate import decoder
    model = AutoModelForCausalLM.from_pretrained(path)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=32,
                         custom_generate=decoder(sled={"evolution_scale": 10}))

Or a checkpoint's folder: `AugmentedModel.save_pretrained` writes `custom_generate/` with
`write_folder(directory, graft, decoding)` and records its files' sha256 in augment_config.json;
the folder checks itself against that record before anything else of it runs, and decodes only
inside a checkpoint that has it (`toolkit.graft.folder_check` says what the check covers and
what it cannot). transformers executes that file, so only with `trust_remote_code=True`:

    model.generate(ids, custom_generate="checkpoints/run", trust_remote_code=True)

The file holds the checkpoint's graft (candidate layers, early_exit_norm) and default decoding
(method options, sampling settings, max_new_tokens), written at save time, since transformers
runs a copy of it from its module cache: the tokens equal
`AugmentedModel.from_pretrained(checkpoint).generate(ids)`'s for unpadded prompts (transformers'
repetition penalty counts left padding, ours does not). Method keywords (`sled=False`,
`dola={...}`) and transformers' own override the saved values.

Order: the call's plan (`toolkit.methods.plan`, processors from `composition.compose`), with
transformers' own penalty, temperature, top-k and top-p: the logits step after its constraint
processors (and any `logits_processor` given), the filters right after its temperature. The
adaptive head needs the grafted head (`AugmentedModel.generate`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import transformers
from omegaconf import OmegaConf
from transformers import (
    GenerationMixin,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
)

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.graft.composition import compose

# calling_folder and verify_folder: the names the generate.py of earlier checkpoints calls.
from toolkit.graft.folder_check import FOLDER, calling_folder, verify_folder  # noqa: F401
from toolkit.graft.tap import EarlyExitTap
from toolkit.methods.options import DecodingConfig, GraftConfig, replacing_saved, with_overrides
from toolkit.methods.plan import plan

_WARPER_NAMES = ("TemperatureLogitsWarper", "TopHLogitsWarper", "TopKLogitsWarper",
                 "TopPLogitsWarper", "MinPLogitsWarper", "TypicalLogitsWarper",
                 "EpsilonLogitsWarper", "EtaLogitsWarper")
_WARPERS = tuple(c for c in (getattr(transformers, n, None) for n in _WARPER_NAMES) if c)

_FOLDER_CODE = '''"""SLED, DoLa and the other registered decoding methods for any transformers causal LM (written by model-surgery-decoding).

transformers runs this file only with trust_remote_code=True:

    model.generate(ids, custom_generate="THIS_CHECKPOINT_DIR", trust_remote_code=True)
    # this checkpoint's saved decoding; or override: sled={{...}}, dola=True, top_n_sigma=1.0

It needs the toolkit installed (requirements.txt); see docs/transformers.md in its repository.

The first statement below checks, before the rest of this file runs and again at each call,
this file (the copy transformers runs) and every file of this folder (changed, missing or
added) against the sha256 hashes in the checkpoint's augment_config.json, and stops with one
line on a difference, or when augment_config.json is missing or lists no hashes for this
folder. It cannot stop code placed above that statement or an edit that removes it (the check
lives in the file it checks), nor an edit made to augment_config.json's hashes as well. It
catches edits and corruption, not an attacker: treat this folder as code you run.
"""

from pathlib import Path

from toolkit.graft import folder_check

folder_check.verify_folder(folder_check.calling_folder(), Path(__file__))

from toolkit.graft import custom_generate  # noqa: E402 (after the check)

# The checkpoint's graft and default decoding (as in its augment_config.json).
GRAFT = {graft!r}
DECODING = {decoding!r}

_run = custom_generate.saved_generate(GRAFT, DECODING)


def generate(model, *args, **kwargs):
    folder_check.verify_folder(folder_check.calling_folder(), Path(__file__))
    return _run(model, *args, **kwargs)
'''
# Sampling settings of a saved DecodingConfig that become the folder's generate() defaults.
_SAVED_SETTINGS = ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty")


def plain_methods() -> tuple[str, ...]:
    """The registered methods a plain transformers model can decode with: every logits- and
    filter-stage method, and the temperature-stage ones that need no head (EDT)."""
    return tuple(m.name for m in methods.all_methods()
                 if m.stage in ("logits", "filter") or (m.stage == "temperature" and m.logits))


def decoder(early_exit_norm: bool | None = None, streamer=None, layers: Any = "all",
            **method_options: Any) -> Callable:
    """A `custom_generate` callable that decodes with the given methods.

    transformers (5.24) does not forward `generate(streamer=...)` to a custom_generate callable:
    give the streamer here instead (the folder entry point does that for you).

    Args:
        early_exit_norm: apply the final norm to early layers before lm_head (None: the model
            type's default, see `EarlyExitTap`).
        streamer: a transformers streamer for the decoded tokens.
        layers: the candidate layers of a method whose own `layers` option is unset (a
            checkpoint's `graft.layers`).
        **method_options: one keyword per method of `plain_methods()` (sled, dola, contrastive,
            top_n_sigma, ...), in the forms `AugmentedModel.generate` takes: True, a dict of
            options, an options object; top_n_sigma also a float.

    Returns:
        The callable to pass as `generate(custom_generate=...)`.
    """
    allowed = plain_methods()
    unknown = sorted(set(method_options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"custom_generate decoding takes the methods {', '.join(allowed)}; {', '.join(unknown)} "
            "is not one of them (the adaptive temperature needs AugmentedModel.generate)"
        )
    bound_streamer = streamer
    options = with_overrides(None, **method_options)
    active = methods.active(options)

    def decode(model, input_ids, logits_processor, stopping_criteria, generation_config,
               synced_gpus=False, streamer=None, **model_kwargs):
        if (generation_config.num_beams or 1) > 1:
            raise ConfigError(
                f"num_beams={generation_config.num_beams} cannot compose with "
                f"{', '.join(m.name for m in active)} in custom_generate; use num_beams=1 "
                "(greedy or sampling)"
            )

        def tap_for(own: Any) -> EarlyExitTap:  # no head here, so never the final norm alone
            return EarlyExitTap(model, layers=layers if own is None else own,
                                early_exit_norm=early_exit_norm)

        steps = plan(dataclasses.replace(options, do_sample=bool(generation_config.do_sample)))
        composed = compose(steps, tap_for)
        own = steps.temperature is not None and steps.temperature.method is not None
        late = [*composed.temperature, *composed.filters] if own else composed.filters
        processors = _spliced(logits_processor, composed.logits, late, own_temperature=own)
        if streamer is None and bound_streamer is not None:
            streamer = bound_streamer
            streamer.put(input_ids.cpu())  # what generate() does with a streamer it was given
        capture = (composed.tap.capture(last_only=True) if composed.tap
                   else contextlib.nullcontext())
        with capture:
            return GenerationMixin._sample(model, input_ids, processors, stopping_criteria,
                                           generation_config, synced_gpus, streamer,
                                           **model_kwargs)

    return decode


def _spliced(prepared: LogitsProcessorList, first: list, after_temperature: list,
             own_temperature: bool = False) -> LogitsProcessorList:
    """transformers' processors with ours inserted: `first` before its repetition penalty and
    its first warper, `after_temperature` right after its temperature warper (or in the same
    place; in its stead with `own_temperature`, when ours sets the temperature): the order of
    `AugmentedModel.generate`."""
    items = list(prepared)
    cut = next((i for i, p in enumerate(items) if isinstance(p, _WARPERS)), len(items))
    head, tail = items[:cut], items[cut:]
    penalty = [p for p in head if isinstance(p, RepetitionPenaltyLogitsProcessor)]
    head = [p for p in head if p not in penalty]
    temperature = tail[:1] if tail and isinstance(tail[0], TemperatureLogitsWarper) else []
    kept = [] if own_temperature else temperature
    return LogitsProcessorList(head + first + penalty + kept + after_temperature
                               + tail[len(temperature):])


def generate(model, *args, early_exit_norm: bool | None = None, **kwargs):
    """transformers' own generate() with `decoder(...)` as the decoding loop; the keywords named
    by `plain_methods()` go to the decoder, the rest to generate()."""
    return _run(model, args, kwargs, {"early_exit_norm": early_exit_norm})


def _run(model, args, kwargs: dict, graft: dict[str, Any]):
    kwargs.pop("custom_generate", None)
    streamer = kwargs.pop("streamer", None)
    chosen = {name: kwargs.pop(name) for name in plain_methods() if name in kwargs}
    loop = decoder(streamer=streamer, **graft, **chosen)
    return GenerationMixin.generate(model, *args, custom_generate=loop, **kwargs)


def saved_generate(graft: dict, decoding: dict) -> Callable:
    """The entry point of a checkpoint's `custom_generate/generate.py`: `generate` with the
    checkpoint's graft and decoding as defaults (module doc); keywords override them."""
    graft_config = _typed(GraftConfig, graft)
    saved = _typed(DecodingConfig, decoding)

    def run(model, *args, **kwargs):
        adaptive = kwargs.pop("adaptive_temperature", None)
        asked = {name: kwargs.pop(name) for name in plain_methods() if name in kwargs}
        options = with_overrides(saved, **replacing_saved(saved, asked, "the checkpoint"))
        if adaptive is not None:
            options = with_overrides(options, adaptive_temperature=adaptive)
        if options.adaptive_temperature.enabled:
            raise ConfigError(
                "this checkpoint decodes with its adaptive temperature head, which a plain "
                "transformers model lacks; use AugmentedModel.from_pretrained(checkpoint)"
                ".generate, or pass adaptive_temperature=False"
            )
        _saved_settings(options, kwargs)
        chosen = {name: options.method(name) for name in plain_methods()}
        return _run(model, args, {**kwargs, **chosen},
                    {"early_exit_norm": graft_config.early_exit_norm,
                     "layers": graft_config.layers})

    return run


def _saved_settings(options: DecodingConfig, kwargs: dict) -> None:
    """Put the saved sampling settings and max_new_tokens that the caller left unset into
    the call: into its generation_config (a copy) when it passed one, else as keywords."""
    passed = kwargs.get("generation_config")
    defaults = {k: getattr(options, k) for k in _SAVED_SETTINGS
                if getattr(options, k) is not None and kwargs.get(k) is None
                and getattr(passed, k, None) is None}
    lengths = ("max_new_tokens", "max_length")
    if all(kwargs.get(k) is None and getattr(passed, k, None) is None for k in lengths):
        defaults["max_new_tokens"] = options.max_new_tokens
    if passed is not None:
        kwargs["generation_config"] = copy.deepcopy(passed)
        kwargs["generation_config"].update(**defaults)
    else:
        kwargs.update(defaults)


def _typed(schema: type, value: dict) -> Any:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), value))


def write_folder(directory, graft: GraftConfig | None = None,
                 decoding: DecodingConfig | None = None) -> Path:
    """Write `directory/custom_generate/` (generate.py holding `graft` and `decoding`, and
    requirements.txt); returns it."""
    folder = Path(directory) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    code = _FOLDER_CODE.format(graft=dataclasses.asdict(graft or GraftConfig()),
                               decoding=dataclasses.asdict(decoding or DecodingConfig()))
    (folder / "generate.py").write_text(code)
    (folder / "requirements.txt").write_text("model-surgery-decoding\n")
    return folder
