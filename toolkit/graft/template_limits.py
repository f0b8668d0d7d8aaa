"""Chat templates rendered within a time, a size and a memory limit.

A checkpoint's chat template is code from a file: transformers renders it in Jinja's sandbox,
which keeps it from the rest of Python but not from looping for hours (nested `range(100000)`
loops) or asking for gigabytes in one step (`"a" * 4000000000`). `bounded(render, template,
variables)` renders the template first in `BoundedSandbox` (transformers' own environment: the
same globals, filters and extensions, each operation that can make a large value in one step
checked before it runs), then calls `render` (transformers' rendering). Both run under a trace
function that, at every Python call and every line of template code, stops the render past
`MAX_SECONDS` or once the process has grown by `MAX_GROWTH` bytes (it costs well under a
millisecond per prompt). `TemplateLimit` says which limit was passed; the caller names the
template.

Checked before they run: `*`, `**` and `%`; calls and filters given a number larger than
`MAX_CHARS` (`ljust`, `center`, `indent`, `lipsum`, ...); `replace` and `join` by the size of
their result; format strings with widths of a million or more. Checked after: each value a
call, filter, operator or lookup gives, and the rendered text, against `MAX_CHARS`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from transformers.utils.chat_template_utils import _compile_jinja_template

MAX_SECONDS = 5.0
MAX_CHARS = 4_000_000  # characters (or items) in one value, and in the rendered prompt
MAX_GROWTH = 2**30  # bytes the process may grow by while a template renders
_WIDE = re.compile(r"\d{7}")  # a format width of a million or more
_SIZED = (str, bytes, list, tuple, dict)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Lines are traced in template code (its loops call nothing); every call is seen.
_TEMPLATE = "<template>"


class TemplateLimit(Exception):
    """A chat template passed a limit while rendering (the message is a clause saying which)."""


def _size(value: Any) -> Any:
    if isinstance(value, _SIZED) and len(value) > MAX_CHARS:
        raise TemplateLimit(f"made a value of {len(value)} items, more than the {MAX_CHARS} "
                            "allowed")
    return value


def _check_call(name: str, target: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a call that would make a value past MAX_CHARS in one step, before it runs."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and abs(value) > MAX_CHARS:
            raise TemplateLimit(f"passed the number {value} to {name}, more than the "
                                f"{MAX_CHARS} allowed")
    size = 0
    if name == "replace" and isinstance(target, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        size = len(target) + (len(target) // len(old) if old else len(target) + 1) * len(new)
    elif name == "join" and args and isinstance(args[0], (list, tuple)):
        size = sum(len(str(p)) for p in args[0]) + len(args[0]) * len(str(target))
    elif name in ("format", "format_map") and isinstance(target, str) and _WIDE.search(target):
        size = MAX_CHARS + 1
    if size > MAX_CHARS:
        raise TemplateLimit(f"would make a text of more than {MAX_CHARS} characters with {name}")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with this module's checks on every call, operator and lookup."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, _SIZED) and isinstance(times, int) and len(seq) * times > MAX_CHARS:
                    raise TemplateLimit(f"would make a value of {len(seq) * times} items with "
                                        f"*, more than the {MAX_CHARS} allowed")
        elif operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise TemplateLimit(f"raises a number to the power {right}, past the 64 allowed")
        elif operator == "%":
            _check_call("format", left, (), {})
        return _size(super().call_binop(context, operator, left, right))

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's own signature
        _check_call(getattr(__obj, "__name__", "a call"), getattr(__obj, "__self__", None),
                    args, kwargs)
        return _size(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj, attribute):
        if attribute in ("format", "format_map"):
            _check_call(attribute, obj, (), {})
        return _size(super().getattr(obj, attribute))

    def getitem(self, obj, argument):
        return _size(super().getitem(obj, argument))


def _bounded_filter(name: str, apply: Callable) -> Callable:
    skip = 0 if getattr(apply, "jinja_pass_arg", None) is None else 1  # a context comes first

    @functools.wraps(apply)  # keeps Jinja's pass_context / pass_eval_context marks
    def checked(*args, **kwargs):
        value, rest = (args[skip], args[skip + 1:]) if len(args) > skip else (None, ())
        if name == "join":
            _check_call(name, rest[0] if rest else kwargs.get("d", ""), (value,), {})
        _check_call(name, value, rest, kwargs)
        return _size(apply(*args, **kwargs))

    return checked


@functools.lru_cache(maxsize=16)
def _compiled(template: str):
    theirs = _compile_jinja_template("").environment
    env = BoundedSandbox(trim_blocks=theirs.trim_blocks, lstrip_blocks=theirs.lstrip_blocks,
                         extensions=[type(e) for e in theirs.extensions.values()])
    env.globals.update(theirs.globals)
    env.filters.update({name: _bounded_filter(name, f) for name, f in theirs.filters.items()})
    return env.from_string(template)


def _resident() -> int:
    """The process's resident bytes (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


@contextlib.contextmanager
def _watched() -> Iterator[None]:
    """Stop the code run inside (this thread) past MAX_SECONDS or MAX_GROWTH bytes of growth."""
    deadline, ceiling, events = time.monotonic() + MAX_SECONDS, _resident() + MAX_GROWTH, [0]

    def trace(frame, event, arg):
        events[0] += 1
        if events[0] % 64 == 0:
            if time.monotonic() > deadline:
                raise TemplateLimit(f"ran past the {MAX_SECONDS:g} s allowed for one prompt")
            if events[0] % 4096 == 0 and _resident() > ceiling:
                raise TemplateLimit(f"grew the process by more than {MAX_GROWTH >> 20} MiB")
        return trace if frame.f_code.co_filename == _TEMPLATE else None

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(previous)


def bounded(render: Callable[[], str], template: str, variables: dict) -> str:
    """`render()` (transformers' rendering of `template`), after a rendering of `template` with
    `variables` in BoundedSandbox; both stop at a limit with TemplateLimit."""
    with _watched():
        size = 0
        for chunk in _compiled(template).generate(**variables):
            size += len(chunk)
            if size > MAX_CHARS:
                raise TemplateLimit(f"wrote more than the {MAX_CHARS} characters allowed")
        return render()
