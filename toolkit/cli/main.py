"""`surgery` / `python cli.py`: SUBCOMMAND RECIPE.yaml [key=value ...].

Every `ToolkitError` becomes one line on stderr (`error: ...`) and exit code 2; recipe problems
are found before any model loads. An output that cannot be written (disk full, read-only) is
one line and exit code 2 as well; Ctrl-C is one line and exit code 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from toolkit import methods
from toolkit.bench.config import mode_choices as bench_modes
from toolkit.cli import commands, lpo, outputs, preflight, serve
from toolkit.cli.outputs import Output
from toolkit.core.errors import ToolkitError
from toolkit.io.files import OUTPUT_ERRNOS

if TYPE_CHECKING:
    from toolkit.recipes.schema import Recipe

EPILOG = """\
overrides are OmegaConf dotlist items, applied after the YAML file, e.g.
  decoding.sled.enabled=true decoding.sled.evolution_scale=20 run_name=try2
  generate.prompts='[Once upon a time]'
--print-config shows the resolved recipe and exits without loading anything."""


@dataclass(frozen=True)
class Command:
    """A subcommand, all of it in one row: the function that runs it on the validated recipe,
    its help text, and what is checked before any model loads (`toolkit.cli.preflight`).

    description: its help text; {scoring}, {generation}, {presets} and {bench} stand for the
        registry's lists, filled in when the parser is built (not at import, so a broken
        plugin cannot stop the import).
    checks: recipe -> None, on its files and option combinations (`preflight.check_*`).
    outputs: recipe -> the paths it writes (`toolkit.cli.outputs`), each checked, then locked
        for the run.
    inputs: recipe -> (key, path) it reads beside the recipe, model and data files every
        command may name (no output may be one of them).
    model_checks: (recipe, what the model's config files say) -> None (`preflight.*_fit`).
    random_shape: it runs on a random-weight model of a named shape (`model.random_shape`).
    """

    run: Callable[[Recipe], object]
    summary: str
    description: str
    checks: tuple[Callable[[Recipe], None], ...] = ()
    outputs: tuple[Callable[[Recipe], list[Output]], ...] = ()
    inputs: tuple[Callable[[Recipe], list[tuple[str, str | None]]], ...] = ()
    model_checks: tuple[Callable[..., None], ...] = ()
    random_shape: bool = False


COMMANDS: dict[str, Command] = {
    "graft": Command(
        commands.cmd_graft,
        "graft the tap and an untrained head onto a base model and save the checkpoint",
        "Loads model.path (or model.tiny), grafts with the `graft` section and writes an "
        "augmented checkpoint (head.safetensors + augment_config.json + tokenizer) to "
        "output_dir.",
        outputs=(outputs.checkpoint,),
    ),
    "collect": Command(
        lpo.cmd_collect,
        "sample replies and write LPO preference pairs (JSONL)",
        "Samples `collect.num_replies` replies per prompt with head-drawn temperatures, scores "
        "them with the `reward` section and writes chosen/rejected pairs to data.pairs. Prompts "
        "come from data.prompts (JSONL) or, when unset, the built-in synthetic task. Rerunning "
        "resumes: prompts already done are skipped.",
        checks=(preflight.check_collect,), outputs=(outputs.pairs,),
        model_checks=(preflight.collection_fits,),
    ),
    "train": Command(
        lpo.cmd_train,
        "train the adaptive-temperature head on LPO pairs with Lightning",
        "Trains only the head on data.pairs with the `train` (loss, optimiser) and `trainer` "
        "(devices, strategy, precision, steps) sections, then exports the checkpoint to "
        "output_dir.",
        checks=(preflight.check_train,),
        outputs=(outputs.checkpoint, outputs.training_logs, outputs.trainer_checkpoints),
        inputs=(outputs.pairs_input,), model_checks=(preflight.pairs_fit,),
    ),
    "generate": Command(
        commands.cmd_generate,
        "generate completions with the recipe's decoding options",
        "Reads generate.prompts (inline list) or generate.input (JSONL with a prompt field, "
        "or prompt_ids: token ids read as given), "
        "decodes with the `decoding` section and writes generate.output (JSONL, input order). "
        "Without an output file the completions go to the terminal; a single prompt streams. "
        "With trainer.devices > 1 the prompts are sharded over processes.",
        checks=(preflight.check_generate,), outputs=(outputs.completions,),
        model_checks=(preflight.replies_fit, preflight.prompts_fit),
    ),
    "eval": Command(
        commands.cmd_eval,
        "score decoding modes on a local dataset (TruthfulQA, FACTOR, GSM8K, ...)",
        "Runs the `eval` section (task, data_path, modes, preset) with the methods' settings "
        "from the `decoding` section and writes per-item and total results as JSON plus a "
        "Markdown report to eval.output_dir. Modes (from the method registry): scoring tasks "
        "{scoring}; generation tasks {generation}. Presets: task (the task's own), none, "
        "{presets}.",
        checks=(preflight.check_eval,), outputs=(outputs.eval_reports,),
    ),
    "bench": Command(
        commands.cmd_bench,
        "time decoding modes side by side (ms/token, memory)",
        "Runs the `bench` section on the model (model.random_shape benchmarks random weights of "
        "a named shape without any checkpoint) and writes a table, JSON and a plot. Modes: "
        "{bench}; the methods' settings come from the `decoding` section.",
        outputs=(outputs.bench_reports,), random_shape=True,
    ),
    "run": Command(
        lpo.cmd_run,
        "the whole pipeline: graft -> collect -> train -> save -> reload -> generate",
        "Runs every step from one recipe, reloads the saved checkpoint from output_dir and "
        "generates samples with the recipe's decoding options; on the synthetic task it also "
        "prints the learned temperature per prompt kind.",
        checks=(preflight.check_collect,),
        outputs=(outputs.checkpoint, outputs.token_checkpoint, outputs.run_report,
                 outputs.trainer_checkpoints, outputs.pairs),
        model_checks=(preflight.replies_fit, preflight.collection_fits),
    ),
    "serve": Command(
        serve.cmd_serve,
        "serve the model on vLLM's OpenAI-compatible server, with its decoding per request",
        "Starts vLLM's OpenAI server on model.path (a checkpoint: its saved decoding is every "
        "request's default, and requests choose methods in vllm_xargs) or model.preset, with "
        "the `serve` section (host, port, dtype, tensor_parallel_size, ...) as its arguments; "
        "this process becomes the server. Needs vLLM: python3 -m toolkit.serving.install "
        "(docs/serving.md).",
        checks=(serve.check_serve,),
    ),
}


def _registry_listing() -> tuple[dict[str, str], str]:
    """The method lists the help shows ({methods}, {scoring}, ... of the descriptions) and a note
    naming every installed plugin that failed to load ("" when none did): `--help` works with a
    broken plugin installed, and lists the methods that did load."""
    broken = methods.plugin_errors()
    if broken:
        names = ", ".join(m.name for m in methods.loaded_methods())
        unknown = "(unavailable until the broken plugin below is fixed)"
        lists = dict(methods=names, scoring=unknown, generation=unknown, presets=unknown,
                     bench=unknown)
        return lists, "".join(f"\nnote: {line}" for line in broken)
    lists = dict(methods=", ".join(m.name for m in methods.all_methods()),
                 scoring=", ".join(methods.scoring_modes()),
                 generation=", ".join(methods.generation_modes()),
                 presets=", ".join(methods.preset_names()), bench=", ".join(bench_modes()))
    return lists, ""


def build_parser() -> argparse.ArgumentParser:
    lists, note = _registry_listing()
    parser = argparse.ArgumentParser(
        prog="surgery",
        description="Graft an early-exit tap and an adaptive-temperature head onto Hugging Face "
        "causal LMs and decode with the registered methods, driven by recipe YAML files.",
        epilog=f"decoding methods (recipe section decoding.NAME): {lists['methods']}\n"
        f"run `surgery SUBCOMMAND --help` for the options of one subcommand{note}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(
            name,
            help=command.summary,
            description=f"{command.summary}.\n\n"
            f"{textwrap.fill(command.description.format(**lists), 88)}",
            epilog=EPILOG + note,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "recipe", metavar="RECIPE.yaml", help="recipe file, e.g. recipes/quickstart.yaml"
        )
        sub.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
        sub.add_argument(
            "--print-config", action="store_true", help="print the resolved recipe and exit"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `surgery` and `cli.py`; returns the process exit code."""
    args = build_parser().parse_args(argv)
    _quiet_library_banners()
    try:
        methods.check_plugins()
        return _dispatch(args)
    except ToolkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in OUTPUT_ERRNOS:
            raise
        where = f" {err.filename}" if err.filename else ""
        print(f"error: cannot write{where}: {err.strerror}; free some space or choose a "
              "writable location, then rerun the same command to resume", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; what was written so far is kept: rerun the same command to resume",
              file=sys.stderr)
        return 130


_BANNERS = ("GPU available:", "TPU available:", "HPU available:", "\U0001f4a1 Tip:", "`Trainer.fit` stopped:")


def _not_a_banner(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_BANNERS)


def _quiet_library_banners() -> None:
    """Keep Lightning's start-up banners (accelerator availability, tips, "fit stopped") and one
    internal deprecation of Lightning under torch 2.13 off the terminal; its other notices (how
    many processes started) and its warnings still show."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _not_a_banner not in logger.filters:
        logger.addFilter(_not_a_banner)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def _dispatch(args: argparse.Namespace) -> int:
    from toolkit.recipes.load import merged_config, resolved_yaml, to_recipe

    config = merged_config(args.recipe, args.overrides)
    recipe = to_recipe(config)
    if args.print_config:
        print(resolved_yaml(config), end="")
        return 0
    preflight.preflight(args.command, COMMANDS, recipe, args.recipe)
    from toolkit.core import runtime

    runtime.configure(recipe.runtime)
    command = COMMANDS[args.command]
    with outputs.held(command, recipe):
        command.run(recipe)
    return 0
