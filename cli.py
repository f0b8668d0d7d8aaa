"""`python cli.py SUBCOMMAND RECIPE.yaml [key=value ...]` (same as the `surgery` command)."""

import sys

from toolkit.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
