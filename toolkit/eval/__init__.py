"""Evaluation of decoding modes: TruthfulQA MC1/2/3, FACTOR, GSM8K / StrategyQA accuracy,
repetition of generations; results as JSON plus a side-by-side report."""

from toolkit.eval.config import EvalConfig
from toolkit.eval.run import run_eval

__all__ = ["EvalConfig", "run_eval"]
