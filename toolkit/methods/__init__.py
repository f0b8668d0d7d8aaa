"""Decoding methods: the registry (`toolkit.methods.registry`) and the built-in methods.

The `register` calls at the end are the registrations; their order is the order of the eval
and bench modes and the composition order within a stage. Add a method: write
`toolkit/methods/<name>.py` (options dataclass, per-step function, optional scoring function,
`METHOD = DecodingMethod(...)`), put its tensor math in `toolkit/decoding/`, and register it
here. See docs/DESIGN.md.
"""

from toolkit.methods import adaptive, contrastive, dola, sled, top_n_sigma
from toolkit.methods.registry import (
    COMPOSED,
    COMPOSED_METHODS,
    GREEDY,
    DecodingMethod,
    active,
    all_methods,
    check_exclusive,
    generation_modes,
    get,
    preset_names,
    register,
    scoring_modes,
)

__all__ = [
    "COMPOSED",
    "COMPOSED_METHODS",
    "GREEDY",
    "DecodingMethod",
    "active",
    "all_methods",
    "check_exclusive",
    "generation_modes",
    "get",
    "preset_names",
    "register",
    "scoring_modes",
]

register(sled.METHOD)
register(dola.METHOD)
register(contrastive.METHOD)
register(top_n_sigma.METHOD)
register(adaptive.METHOD)
