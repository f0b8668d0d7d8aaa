"""Driver for concurrency tests: run the CLI, but once the model has loaded (every lock taken),
create READY and wait for GO to exist before going on.

    python tests/_hold.py READY GO -- SUBCOMMAND RECIPE [key=value ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main() -> int:
    ready, go, sep, *argv = sys.argv[1:]
    assert sep == "--"
    from toolkit.recipes import models

    real = models.load_model

    def load_then_wait(*args, **kwargs):
        model = real(*args, **kwargs)
        Path(ready).touch()
        deadline = time.monotonic() + 300
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return model

    models.load_model = load_then_wait  # the commands import it when they run
    from toolkit.cli.main import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
