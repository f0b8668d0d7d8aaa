"""Fault-injection driver: run the CLI with a signal sent to this very process at one point.

    python tests/_faults.py POINT SIGNAL N -- SUBCOMMAND RECIPE [key=value ...]

POINT names where (after the N-th call of a function, or between the two renames of a
directory swap); SIGNAL is KILL (no cleanup at all) or INT (Ctrl-C, delivered however the
driver's parent left SIGINT's disposition). Exits with the CLI's code.
"""

from __future__ import annotations

import os
import signal
import sys


def _after_calls(owner, name: str, n: int, sig: int) -> None:
    real = getattr(owner, name)
    count = [0]

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), sig)
        return result

    setattr(owner, name, wrapper)


class _RenameThenSignal:
    """Stands in for `os` inside toolkit.io.atomic: the signal comes right after the first rename."""

    def __init__(self, sig: int) -> None:
        self.sig, self.calls = sig, 0

    def rename(self, src, dst) -> None:
        os.rename(src, dst)
        self.calls += 1
        if self.calls == 1:
            os.kill(os.getpid(), self.sig)

    def __getattr__(self, name):
        return getattr(os, name)


def install(point: str, sig: int, n: int) -> None:
    if point == "between-renames":
        from toolkit.io import atomic

        atomic.exchange = lambda a, b: False
        atomic.os = _RenameThenSignal(sig)
    elif point == "head-written":
        from toolkit.graft import checkpoint

        _after_calls(checkpoint, "_write_head", n, sig)
    elif point == "pair-appended":
        from toolkit.lpo import pairs

        _after_calls(pairs, "append_record", n, sig)
    elif point == "completion-appended":
        from toolkit.cli import predict

        _after_calls(predict, "append_record", n, sig)
    elif point == "training-step":
        from toolkit.lpo.module import HeadLPOModule

        _after_calls(HeadLPOModule, "training_step", n, sig)
    else:
        raise SystemExit(f"unknown fault point {point!r}")


def main() -> int:
    point, name, n, sep, *argv = sys.argv[1:]
    assert sep == "--"
    # A background job of a non-interactive shell (`nohup pytest &`, some CI runners) starts
    # with SIGINT ignored and passes that on; Ctrl-C must reach this process as it does a user's.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install(point, getattr(signal, f"SIG{name}"), int(n))
    from toolkit.cli.main import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
