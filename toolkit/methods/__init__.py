"""Decoding methods: the registry (`toolkit.methods.registry`) and the built-in methods.

The `register` calls at the end are the registrations; their order is the order of the eval
and bench modes and the composition order within a stage. A built-in method: write
`toolkit/methods/<name>.py` (options dataclass, per-step function, optional scoring function,
`METHOD = DecodingMethod(...)`), put its tensor math in `toolkit/decoding/`, register it here
and give it its typed field in `toolkit.methods.options.DecodingConfig`. A method from another package
registers itself (docs/plugins.md).
"""

from toolkit.methods import (
    adaptive,
    contrastive,
    delta,
    dola,
    edt,
    p_less,
    sled,
    top_n_sigma,
    typical,
)
from toolkit.methods.registry import (
    COMPOSED,
    COMPOSED_METHODS,
    ENTRY_POINT_GROUP,
    GREEDY,
    DecodingMethod,
    active,
    all_methods,
    check_exclusive,
    check_plugins,
    generation_modes,
    get,
    import_module,
    loaded_methods,
    options_of,
    plugin_errors,
    preset_names,
    register,
    scoring_modes,
)

__all__ = [
    "COMPOSED",
    "COMPOSED_METHODS",
    "ENTRY_POINT_GROUP",
    "GREEDY",
    "DecodingMethod",
    "active",
    "all_methods",
    "check_exclusive",
    "check_plugins",
    "generation_modes",
    "get",
    "import_module",
    "loaded_methods",
    "options_of",
    "plugin_errors",
    "preset_names",
    "register",
    "scoring_modes",
]

register(sled.METHOD)
register(dola.METHOD)
register(contrastive.METHOD)
register(top_n_sigma.METHOD)
register(typical.METHOD)
register(adaptive.METHOD)
register(p_less.METHOD)
register(edt.METHOD)
register(delta.METHOD)
