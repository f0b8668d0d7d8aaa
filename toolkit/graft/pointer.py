"""A checkpoint's `config.json`: a pointer to `AugmentedModel.from_pretrained`, not a model
config, and what transformers' Auto classes make of it once the toolkit is imported.

The file holds one key, `model_type`, whose value is the pointer sentence itself, so that even
without the toolkit transformers' own error names it (its "does not recognize this
architecture" message quotes the model type). `register()`, called when the toolkit's
checkpoint code is imported (and so in a vLLM server that serves a checkpoint):

- registers that model type with `AutoConfig`, so `AutoTokenizer.from_pretrained(folder)` and
  `AutoConfig.from_pretrained(folder)` read the folder quietly (transformers otherwise warns
  that a config of one type instantiates another);
- registers `Pointer` for it with `AutoModelForCausalLM`, whose `from_pretrained(folder)` then
  raises one line naming `AugmentedModel.from_pretrained`, and no upgrade advice;
- lists the classes given (AugmentedModel) beside it, so `pipeline("text-generation",
  model=am)`, which checks a model's class name against the registered causal LMs, takes one.

The file's content is what every format version wrote, so checkpoints read the same either way.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from toolkit.core.errors import CheckpointError

MODEL_TYPE = ("model-surgery checkpoint: load it with toolkit.AugmentedModel.from_pretrained(this "
              "folder), not AutoModelForCausalLM")
POINTER = {"model_type": MODEL_TYPE}


class PointerConfig(PretrainedConfig):
    """The config transformers reads from a checkpoint folder's `config.json`; its
    architecture is `Pointer` (the file names none)."""

    model_type = MODEL_TYPE

    def __init__(self, **kwargs: Any) -> None:
        kwargs["architectures"] = kwargs.get("architectures") or [Pointer.__name__]
        super().__init__(**kwargs)


class NotAModelError(CheckpointError, ValueError):
    """A checkpoint folder loaded as a model (a ValueError, as transformers' own refusal of an
    unknown model type)."""


class Pointer:
    """What `AutoModelForCausalLM` finds for a checkpoint folder: loading it raises the
    pointer, one line."""

    config_class = PointerConfig

    @classmethod
    def from_pretrained(cls, folder: Any = None, *args: Any, **kwargs: Any) -> None:
        raise NotAModelError(
            f"{folder} is a model-surgery checkpoint (a decoding head and its settings over a "
            f"base model, not a model of its own): load it with "
            f"toolkit.AugmentedModel.from_pretrained({str(folder)!r})"
        )

    @classmethod
    def _from_config(cls, config: Any, **kwargs: Any) -> None:
        cls.from_pretrained("this config")


def register(*accepted: type) -> None:
    """Register the pointer with transformers' AutoConfig and AutoModelForCausalLM (module doc);
    `accepted`: classes that pipelines should take as causal LMs. Calling it again adds them."""
    AutoConfig.register(MODEL_TYPE, PointerConfig, exist_ok=True)
    mapping = AutoModelForCausalLM._model_mapping
    known = mapping._extra_content.get(PointerConfig, (Pointer,))
    classes = (*known, *(c for c in accepted if c not in known))
    AutoModelForCausalLM.register(PointerConfig, classes, exist_ok=True)
