"""Side-by-side timing of decoding modes (greedy, compute floor, plain sampling, every
registered method's mode, composed): JSON, table and plot; random-weight models by shape name.

Only `BenchConfig` is imported eagerly, so recipe validation does not pull in torch.
"""

from toolkit.bench.config import BenchConfig

__all__ = ["SHAPES", "BenchConfig", "random_model", "run_bench"]


def __getattr__(name: str):
    if name == "run_bench":
        from toolkit.bench.run import run_bench

        return run_bench
    if name in ("SHAPES", "random_model"):
        from toolkit.bench import shapes

        return getattr(shapes, name)
    raise AttributeError(f"module 'toolkit.bench' has no attribute {name!r}")
