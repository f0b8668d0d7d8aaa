"""transformers' weight-loading progress bars off while a model loads from local files: the
toolkit says itself what it loads (a Hub download, before that, keeps its bars)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """The bars off inside the block; transformers' setting restored after it."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()
