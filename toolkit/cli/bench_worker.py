"""`python -m toolkit.cli.bench_worker RECIPE.yaml`: the second process of `cli.py bench` with
`bench.allocators` (`toolkit.bench.worker`): it applies the recipe's `runtime` (another
allocator), loads its model and times the rounds it is handed on stdin."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def starter(recipe: Any, folder: str | Path) -> Callable[[str], list[str]]:
    """allocator -> the command line of a second process on `recipe` with that
    `runtime.allocator` (its recipe written into `folder`)."""

    def command(allocator: str) -> list[str]:
        runtime = dataclasses.replace(recipe.runtime, allocator=allocator)
        path = Path(folder, f"recipe-{allocator}.yaml")
        path.write_text(OmegaConf.to_yaml(OmegaConf.structured(
            dataclasses.replace(recipe, runtime=runtime))), encoding="utf-8")
        return [sys.executable, "-m", "toolkit.cli.bench_worker", str(path)]

    return command


def main(path: str) -> None:
    from toolkit.bench.worker import serve
    from toolkit.core import runtime
    from toolkit.recipes.load import load_recipe
    from toolkit.recipes.models import load_model

    recipe = load_recipe(path)
    runtime.configure(recipe.runtime)
    am = load_model(recipe.model, recipe.graft)
    serve(am, recipe.bench, recipe.decoding, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
