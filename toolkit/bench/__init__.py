"""Side-by-side timing of decoding modes (greedy, compute floor, plain sampling, every
registered method's mode, composed): JSON, table and plot.

Only `BenchConfig` is imported eagerly, so recipe validation does not pull in torch.
"""

from toolkit.bench.config import BenchConfig

__all__ = ["BenchConfig", "run_bench"]


def __getattr__(name: str):
    if name == "run_bench":
        from toolkit.bench.run import run_bench

        return run_bench
    raise AttributeError(f"module 'toolkit.bench' has no attribute {name!r}")
