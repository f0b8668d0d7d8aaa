"""Side-by-side timing of decoding modes (greedy, compute floor, SLED, DoLa, top-n-sigma,
adaptive temperature, composed): JSON, table and plot; random-weight models by shape name."""

from toolkit.bench.config import BenchConfig
from toolkit.bench.run import run_bench
from toolkit.bench.shapes import SHAPES, random_model

__all__ = ["SHAPES", "BenchConfig", "random_model", "run_bench"]
