"""The command line: `surgery` / `python cli.py` with subcommands driven by recipe files."""
