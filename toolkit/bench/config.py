"""`BenchConfig`: what `run_bench` times (an OmegaConf structured schema)."""

from __future__ import annotations

from dataclasses import dataclass, field

from toolkit import methods
from toolkit.core.errors import ConfigError, check_choice, check_range
from toolkit.core.runtime import ALLOCATORS

# greedy, the compute floor, plain sampling, then one mode per registered method and composed
# (see `toolkit.methods`). `sled` expands to one mode per K in `sled_ks` (sled_k10, sled_k50,
# ...); greedy and the floor are always measured, since every ratio is taken against them.
FLOOR = "floor"
SAMPLE = "sample"


def mode_choices() -> tuple[str, ...]:
    """Every bench mode, in measuring order (read from the registry, plugins included)."""
    return (methods.GREEDY, FLOOR, SAMPLE, *methods.generation_modes()[1:])


KEY = "bench.output_dir"
# The files a bench writes into bench.output_dir (see `toolkit.io.reports`).
FILES = ("bench.json", "bench.md", "bench.png")


@dataclass
class BenchConfig:
    """Side-by-side timing of decoding modes through `AugmentedModel.generate`.

    Every repeat runs every (batch size, mode) once, the mode order rotating from repeat to
    repeat; the reported numbers are medians over `repeats` after `warmup` untimed rounds.
    Prefill = time to the first new token; decode = per-token time of the remaining tokens.
    The methods' settings (SLED's rate, top-n-sigma's n, ...) come from the recipe's
    `decoding` section; `sled_ks` sweeps SLED's evolution_scale. `sample` is plain sampling at
    the recipe's temperature, the baseline of the sampling modes.

    allocators: `runtime.allocator` values to time side by side (e.g. [reuse, system]); empty
    = only this run's. Each one other than this process's runs in a second process loading the
    same recipe (glibc's settings are process-wide and cannot be undone), taking turns with this
    one round by round; every row then names its allocator, its ratios taken within it.

    eval_questions > 0 also times TruthfulQA-style multiple-choice scoring (greedy and every
    method with a scoring mode, the truthfulqa preset): that many questions of random tokens,
    `eval_prompt_len` tokens each, with `eval_answers` answers of `eval_answer_len` tokens,
    scored `eval_batch_size` answers per forward pass; reported as questions/s and answers/s.
    """

    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    prompt_len: int = 32
    new_tokens: int = 32
    repeats: int = 5
    warmup: int = 1
    modes: list[str] = field(default_factory=list)
    sled_ks: list[int] = field(default_factory=lambda: [10, 50])
    seed: int = 0
    output_dir: str = "bench_out"
    plot: bool = True
    progress: bool = True
    allocators: list[str] = field(default_factory=list)
    eval_questions: int = 0
    eval_prompt_len: int = 96
    eval_answers: int = 8
    eval_answer_len: int = 12
    eval_batch_size: int = 8

    def __post_init__(self) -> None:
        if not self.batch_sizes:
            raise ConfigError("bench.batch_sizes is empty; give at least one batch size, e.g. [1, 8]")
        for b in self.batch_sizes:
            check_range("bench.batch_sizes", b, low=1)
        check_range("bench.prompt_len", self.prompt_len, low=1)
        check_range("bench.new_tokens", self.new_tokens, low=2)
        check_range("bench.repeats", self.repeats, low=1)
        check_range("bench.warmup", self.warmup, low=0)
        for mode in self.modes:
            check_choice("bench.modes", mode, mode_choices())
        for k in self.sled_ks:
            check_range("bench.sled_ks", k, low=1)
        for allocator in self.allocators:
            check_choice("bench.allocators", allocator, ALLOCATORS)
        if len(set(self.allocators)) < len(self.allocators):
            raise ConfigError(f"bench.allocators={list(self.allocators)} names an allocator "
                              "twice; give each once, e.g. [reuse, system]")
        check_range("bench.eval_questions", self.eval_questions, low=0)
        for key in ("eval_prompt_len", "eval_answers", "eval_answer_len", "eval_batch_size"):
            check_range(f"bench.{key}", getattr(self, key), low=1)

    def mode_names(self) -> list[str]:
        """Concrete mode names in measuring order (greedy and floor first)."""
        choices = mode_choices()
        chosen = list(self.modes) or list(choices)
        names = ["greedy", "floor"]
        for mode in choices[2:]:
            if mode not in chosen:
                continue
            names += [f"sled_k{k}" for k in self.sled_ks] if mode == "sled" else [mode]
        return names
