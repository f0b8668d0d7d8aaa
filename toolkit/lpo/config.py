"""Typed configs of the LPO job (dataclasses that OmegaConf can use as schemas).

Each one validates itself in `__post_init__`, so a bad value fails as soon as a recipe is turned
into objects, naming the key and the allowed values.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from toolkit.core.errors import ConfigError, check_choice, check_range
from toolkit.lpo import trainer_args
from toolkit.methods.options import chat_template_setting

REWARD_KINDS = ("exact_match", "repetition", "reward_model", "function")
LOSS_VARIANTS = ("tokens", "tokens_separate", "latent")
LOSS_TYPES = ("sigmoid", "ipo", "hinge")
LOGGERS = ("csv", "tensorboard", "wandb", "mlflow")
LR_SCHEDULERS = ("constant", "cosine", "linear")
# Loggers from optional extras: the importable modules that serve them, and the extra's name.
LOGGER_PACKAGES = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
                   "wandb": (("wandb",), "wandb"), "mlflow": (("mlflow",), "mlflow")}
STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")


def _valid_devices(devices: Any) -> bool:
    if devices == "auto":
        return True
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1
    if isinstance(devices, (list, tuple)) or type(devices).__name__ == "ListConfig":
        items = list(devices)
        return bool(items) and all(isinstance(i, int) and i >= 0 for i in items)
    return False


@dataclass
class RewardConfig:
    """How a reply is scored.

    exact_match: 1.0 when the reply's final answer (GSM8K `#### 42`, else the last number)
    equals the prompt record's `answer_field`, else 0.0.
    repetition: minus the number of repeated `ngram`-grams of reply tokens (fewest is best).
    reward_model: the first logit of a local `AutoModelForSequenceClassification` directory.
    function: a user function `module:function` called with (prompt, reply, record) -> float.
    """

    kind: str = "exact_match"
    answer_field: str = "answer"
    ngram: int = 3
    model_path: Optional[str] = None
    function: Optional[str] = None

    def __post_init__(self) -> None:
        check_choice("reward.kind", self.kind, REWARD_KINDS)
        check_range("reward.ngram", self.ngram, low=1)
        if self.kind == "reward_model" and not self.model_path:
            raise ConfigError("reward.kind='reward_model' needs reward.model_path (a local dir)")
        if self.kind == "function" and (not self.function or ":" not in self.function):
            raise ConfigError(
                f"reward.function={self.function!r} is not allowed; give 'module:function'"
            )


@dataclass
class CollectConfig:
    """Preference-data collection: N sampled replies per prompt, temperatures from the head
    (drawn per reply or per token, as the head's level `graft.head.level` says)."""

    num_replies: int = 8
    prompts_per_batch: int = 4
    max_new_tokens: int = 64
    seed: int = 0
    reward: RewardConfig = field(default_factory=RewardConfig)
    # Append to a pairs file that another producer (model, settings, reward) started.
    force_resume: bool = False

    def __post_init__(self) -> None:
        check_range("collect.num_replies", self.num_replies, low=2)
        check_range("collect.prompts_per_batch", self.prompts_per_batch, low=1)
        check_range("collect.max_new_tokens", self.max_new_tokens, low=1)


@dataclass
class TrainConfig:
    """What the head is trained on (docs/methods.md section 6).

    loss: the LPO variant (tokens / tokens_separate / latent); loss_type: how its margin becomes
    a loss, as TRL names them (sigmoid / ipo / hinge); beta > 0, default 0.1 as in TRL's
    DPOConfig (the LPO paper's value is not recorded in docs/methods.md).
    Validation: `val_fraction` of the pairs (drawn with `val_seed`) held out, or `val_pairs`, a
    pair JSONL of its own; validation runs every epoch and the best head (lowest eval_loss) is the
    one exported.
    """

    loss: str = "tokens_separate"
    loss_type: str = "sigmoid"
    beta: float = 0.1
    val_fraction: float = 0.0
    val_pairs: Optional[str] = None
    val_seed: int = 0

    def __post_init__(self) -> None:
        check_choice("train.loss", self.loss, LOSS_VARIANTS)
        check_choice("train.loss_type", self.loss_type, LOSS_TYPES)
        check_range("train.beta", self.beta, low=0.0, low_open=True)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(
                f"train.val_fraction={self.val_fraction!r} is out of range; it must be >= 0 "
                "and < 1 (e.g. 0.1 holds out a tenth of the pairs)"
            )
        if self.val_pairs and self.val_fraction > 0:
            raise ConfigError(
                "train.val_fraction and train.val_pairs are both set; hold out a fraction or "
                "give a validation file, not both"
            )

    @property
    def validates(self) -> bool:
        return bool(self.val_pairs) or self.val_fraction > 0


@dataclass
class TrainerConfig:
    """Lightning Trainer settings plus the optimisation knobs of the head."""

    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: int = -1
    max_epochs: Optional[int] = 10
    accumulate_grad_batches: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    gradient_clip_val: Optional[float] = None
    logger: Any = False  # false | true (csv) | csv | tensorboard | wandb | mlflow | a list
    progress_bar: Optional[bool] = None  # None: when stderr is a terminal
    log_every_n_steps: int = 10
    checkpoint_dir: Optional[str] = None
    ckpt_path: Optional[str] = None  # a last.ckpt, or "last": checkpoint_dir's, if any
    seed: int = 0
    callbacks: list[Any] = field(default_factory=list)  # class paths or {class_path, init_args}
    lightning: dict[str, Any] = field(default_factory=dict)  # other Trainer arguments

    def __post_init__(self) -> None:
        check_choice("trainer.accelerator", self.accelerator, ACCELERATORS)
        _check_strategy(self.strategy)
        check_choice("trainer.precision", str(self.precision), PRECISIONS)
        if not _valid_devices(self.devices):
            raise ConfigError(
                f"trainer.devices={self.devices!r} is not allowed; give 'auto', an int >= 1 "
                "or a list of device indices"
            )
        if self.max_steps != -1:
            check_range("trainer.max_steps", self.max_steps, low=1)
        if self.max_epochs is not None:
            check_range("trainer.max_epochs", self.max_epochs, low=1)
        if self.max_steps == -1 and self.max_epochs is None:
            raise ConfigError("trainer.max_steps and trainer.max_epochs are both unset; set one")
        check_range("trainer.accumulate_grad_batches", self.accumulate_grad_batches, low=1)
        check_range("trainer.batch_size", self.batch_size, low=1)
        check_range("trainer.lr", self.lr, low=0.0, low_open=True)
        check_range("trainer.weight_decay", self.weight_decay, low=0.0)
        check_range("trainer.log_every_n_steps", self.log_every_n_steps, low=1)
        check_choice("trainer.lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        check_range("trainer.warmup_steps", self.warmup_steps, low=0)
        if self.gradient_clip_val is not None:
            check_range("trainer.gradient_clip_val", self.gradient_clip_val, low=0.0,
                        low_open=True)
        self.logger = logger_names(self.logger)
        if self.ckpt_path == "last" and not self.checkpoint_dir:
            raise ConfigError("trainer.ckpt_path=last resumes from trainer.checkpoint_dir's "
                              "last.ckpt; set trainer.checkpoint_dir (where training writes it)")
        trainer_args.check_lightning(self.lightning, {f.name for f in fields(self)})
        trainer_args.make_callbacks(list(self.callbacks))  # built once here to check them

    @property
    def shows_progress(self) -> bool:
        """progress_bar, or when unset, whether stderr is a terminal."""
        return sys.stderr.isatty() if self.progress_bar is None else self.progress_bar


def _check_strategy(strategy: str) -> None:
    """A strategy Lightning knows; deepspeed's need the deepspeed package."""
    if strategy in STRATEGIES:
        return
    from lightning.pytorch.strategies import StrategyRegistry

    known = StrategyRegistry.available_strategies()
    check_choice("trainer.strategy", strategy, (*STRATEGIES, *known))
    if strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"trainer.strategy={strategy} needs the deepspeed package, which is "
                          "not installed; pip install deepspeed (or choose trainer.strategy="
                          "ddp or fsdp)")


def logger_names(spec: Any) -> list[str]:
    """`trainer.logger` as a list of names: false/null -> [], true -> ['csv'], a name or a list
    of names from LOGGERS (each at most once)."""
    if spec is None or spec is False:
        return []
    if spec is True:
        return ["csv"]
    names = [spec] if isinstance(spec, str) else list(spec)
    for name in names:
        check_choice("trainer.logger", name, LOGGERS)
        modules, extra = LOGGER_PACKAGES.get(name, ((), ""))
        if modules and not any(importlib.util.find_spec(m) for m in modules):
            raise ConfigError(
                f"trainer.logger={name} needs the {modules[0]} package, which is not installed; "
                f"pip install -e \".[{extra}]\" (or choose trainer.logger=csv)"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"trainer.logger={names!r} repeats a logger; list each once")
    return names


@dataclass
class SyntheticConfig:
    """Sizes of the built-in synthetic LPO task (used when `data.prompts` is not set)."""

    train_prompts: int = 64
    eval_prompts: int = 32
    prompt_length: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("data.synthetic.prompt_length", self.prompt_length, low=2)
        check_range("data.synthetic.train_prompts", self.train_prompts, low=1)
        check_range("data.synthetic.eval_prompts", self.eval_prompts, low=1)


BUILTIN_TASKS = ("synthetic", "arith_writing")


@dataclass
class ArithWritingConfig:
    """Sizes and reward of the built-in arithmetic + writing task (`toolkit.lpo.arith_writing`).

    train_per_kind / eval_per_kind: prompts of each kind for collection / held-out evaluation
    (disjoint); eval_samples: replies per held-out prompt and setting; ngram, repetition_penalty:
    the writing reward (`diversity_rewards`); token_head: after the sequence-level head, `run`
    also trains a token-level head on the same pairs and reports it (checkpoint
    `<output_dir>-token`).
    """

    train_per_kind: int = 16
    eval_per_kind: int = 12
    eval_samples: int = 3
    eval_batch_size: int = 48
    seed: int = 0
    ngram: int = 2
    repetition_penalty: float = 1.0
    token_head: bool = True

    def __post_init__(self) -> None:
        for key in ("train_per_kind", "eval_per_kind", "eval_samples", "eval_batch_size", "ngram"):
            check_range(f"data.arith_writing.{key}", getattr(self, key), low=1)
        check_range("data.arith_writing.repetition_penalty", self.repetition_penalty, low=0.0)


@dataclass
class DataConfig:
    """LPO data: prompts in (a JSONL file, or a built-in task when unset), pairs out.

    task: the built-in task used when `prompts` is unset: 'synthetic' (token-id prompts for the
        tiny random models) or 'arith_writing' (arithmetic + writing prompts for a real chat
        model);
    prompts: JSONL, one object per line with `prompt_field` (and the reward's answer field);
    template: optional prompt template filled from each line's fields, e.g.
        'Q: {question}\nA:' (when unset the prompt is the `prompt_field` text);
    pairs: the preference-pair JSONL that `collect` writes and `train` reads;
    chat_template: auto, on or off, as `generate.chat_template`: how text prompts (the
        file's, after `template`, and the arith_writing task's questions) meet a chat model;
        the trained checkpoint records the convention and generation follows it.
    """

    prompts: Optional[str] = None
    prompt_field: str = "prompt"
    template: Optional[str] = None
    pairs: str = "${work_dir}/pairs.jsonl"
    task: str = "synthetic"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    arith_writing: ArithWritingConfig = field(default_factory=ArithWritingConfig)
    chat_template: str = "auto"

    def __post_init__(self) -> None:
        check_choice("data.task", self.task, BUILTIN_TASKS)
        self.chat_template = chat_template_setting("data.chat_template", self.chat_template)
