"""The KV cache keyword across transformers 5 releases.

A causal LM's forward took its cache as `past_key_values` up to 5.2x; later releases call it
`cache` (the old name warns until it goes) and an older release would silently drop `cache=`
into `**kwargs` and run without the cache. `cache_kwargs` names whichever this model's forward
declares, so a caller never depends on the installed release.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from transformers import DynamicCache


@functools.cache
def _keyword(forward_class: type) -> str:
    params = inspect.signature(forward_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """`{keyword: cache}` for `model(...)`, with the keyword its forward takes a cache under."""
    return {_keyword(type(model)): cache}


def new_cache(model: Any) -> DynamicCache:
    """An empty dynamic cache for `model`, filled in place by a forward given `cache_kwargs`."""
    return DynamicCache(config=model.config)
