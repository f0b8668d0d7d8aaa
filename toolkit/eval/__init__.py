"""Evaluation of decoding modes: TruthfulQA MC1/2/3, FACTOR, GSM8K / StrategyQA accuracy,
repetition of generations; results as JSON plus a side-by-side report.

`run_eval` is imported on first use, so reading an `EvalConfig` (recipe validation) does not
pull in torch and transformers.
"""

from toolkit.eval.config import EvalConfig

__all__ = ["EvalConfig", "run_eval"]


def __getattr__(name: str):
    if name == "run_eval":
        from toolkit.eval.run import run_eval

        return run_eval
    raise AttributeError(f"module 'toolkit.eval' has no attribute {name!r}")
