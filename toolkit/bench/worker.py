"""The bench's second process, for `bench.allocators`: the same model under another
`runtime.allocator`, timing the rounds the first process hands it.

glibc's thresholds are process-wide and once set cannot be put back as they were (setting them
turns off glibc's own adaptive thresholds), so the allocator left alone (`system`) can only be
measured in a process that never touched it. `Worker` starts such a process from a command line
(`cli.py bench` gives `python -m toolkit.cli.bench_worker RECIPE.yaml`, the recipe with
`runtime.allocator` replaced); the process loads the model and `serve`s: for each line
`BATCH MODE` on its stdin it runs one round (`toolkit.bench.rounds.measure`, the same prompts and
decoding options as the first process) and answers one line `SAMPLE {json}`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any, TextIO

from toolkit.core.errors import ToolkitError
from toolkit.io import json_reader

MARK = "SAMPLE "


class WorkerError(ToolkitError):
    """The second bench process stopped."""


class Worker:
    """A second bench process started from `command`, running `allocator`."""

    def __init__(self, command: Sequence[str], allocator: str):
        self.allocator = allocator
        self._proc = subprocess.Popen(list(command), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)

    def measure(self, batch: int, mode: str) -> dict[str, float]:
        """One round of `mode` at `batch` in the second process."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(f"{batch} {mode}\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass
        for line in self._proc.stdout:
            if line.startswith(MARK):
                return json_reader.loads(line[len(MARK):])
        raise WorkerError(f"the bench's second process (runtime.allocator={self.allocator}) "
                          f"stopped with exit code {self._proc.wait()}; its error is above")

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(am: Any, config: Any, decoding: Any, requests: TextIO, answers: TextIO) -> None:
    """The second process's loop: one `SAMPLE {json}` line on `answers` per `BATCH MODE` line
    on `requests`, measured on `am` with `config`'s prompts and `decoding`'s options."""
    from toolkit.bench.measure import PeakMemory
    from toolkit.bench.rounds import bench_decoding, measure, prompts

    device = am.base.device
    ids = prompts(am, config, device)
    memory = PeakMemory(device)
    for line in requests:
        batch, mode = line.split()
        options = bench_decoding(mode, config, decoding)
        sample = measure(am, mode, options, ids[int(batch)], memory)
        print(MARK + json.dumps(sample), file=answers, flush=True)
