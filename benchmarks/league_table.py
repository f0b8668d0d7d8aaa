"""The league table: every decoding method on one model, in one run (docs/figures.md).

    OMP_NUM_THREADS=1 python3 benchmarks/league_table.py smollm2-135m-instruct \
        --truthfulqa /path/to/TruthfulQA.csv --head checkpoints/quickstart

A row per method (`ROWS`; the learned head only with `--head`); columns where they apply, blank
elsewhere: TruthfulQA MC1/MC2/MC3 +- standard error (`cli.py eval`'s paper protocol, the first
`--questions`), arithmetic exact match of the quickstart's task (`--replies` held-out questions,
one reply each, the same seed for every row) sampled at T = 1 and T = 2 or at the row's own
temperature, the quickstart task's held-out reward, decode tokens/s relative to greedy at batch
8. One torch thread. The scored rows on one graft share one TruthfulQA pass (its early-layer
logits are most of the cost); each row's cell is what it gets alone. Each finished cell goes at
once into OUT/league.json and a rerun with the same settings skips it (resume); the table goes
to OUT/league.md and between the markers
`<!-- league:MODEL -->` ... `<!-- /league:MODEL -->` of `--figures` (appended when missing).
The same command with `--worker`, started beside it (another core), shares the cells: each cell
is computed once, by whichever run claims it first.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from toolkit.core.errors import ToolkitError
from toolkit.io import staging
from toolkit.methods.options import DecodingConfig, pinned, with_overrides

TEMPERATURES = (1.0, 2.0)
FORMAT = "league-table/1"


@dataclass(frozen=True)
class Row:
    """One method: its decoding overrides (and transformers generate() keywords), whether it
    samples at the table's temperatures, the eval mode it scores TruthfulQA with (None: it
    has none), and which graft of the model it runs on."""

    name: str
    label: str
    options: dict = field(default_factory=dict)
    hf: dict = field(default_factory=dict)
    sampled: bool = False
    scored: str | None = None
    graft: str = "default"  # "all_layers" (0..L-1), "norm" / "norm_late" (early_exit_norm;
    #                         the late one over layers L-2, L-1 only), "head"


ROWS = (
    Row("greedy", "greedy", scored="greedy"),
    Row("sampling", "sampling", sampled=True),
    Row("top_p", "top-p 0.9", {"top_p": 0.9}, sampled=True),
    Row("min_p", "min-p 0.1", hf={"min_p": 0.1}, sampled=True),
    Row("top_n_sigma", "top-n-sigma n=1", {"top_n_sigma": {"n": 1.0}}, sampled=True),
    Row("p_less", "p-less", {"p_less": True}, sampled=True),
    Row("edt", "EDT (t0 = T, theta 1)", {"edt": {"theta": 1.0}}, sampled=True),
    Row("head", "learned head", {"adaptive_temperature": True, "do_sample": True}, graft="head"),
    Row("sled_official", "SLED 2.5/75, layers 0..L-1",
        {"sled": {"evolution_rate": 2.5, "evolution_scale": 75}}, scored="sled",
        graft="all_layers"),
    Row("sled", "SLED 2/10 (ours)", {"sled": True}, scored="sled"),
    Row("dola", "DoLa", {"dola": True}, scored="dola"),
    Row("delta", "DeLTa +1, layers 1..L-1", {"delta": True}, scored="delta", graft="norm"),
    Row("delta_late", "DeLTa +1, layers L-2, L-1", {"delta": True}, scored="delta",
        graft="norm_late"),
    Row("contrastive", "contrastive", {"contrastive": True}, scored="contrastive"),
)


def row_decoding(row: Row, temperature: float = 1.0, max_new_tokens: int = 16) -> DecodingConfig:
    """The row's decoding: its options on top of greedy (sampling at `temperature`, seed 0, for
    the sampled rows; EDT's t0 is the temperature)."""
    options = dict(row.options)
    if row.sampled:
        options.update(do_sample=True, temperature=temperature)
        if "edt" in options:
            options["edt"] = {**options["edt"], "t0": temperature}
    return pinned(with_overrides(DecodingConfig(max_new_tokens=max_new_tokens, seed=0), **options))


class Models:
    """The model's grafts, made on first use over one loaded base model."""

    def __init__(self, args: argparse.Namespace):
        from toolkit.recipes.models import load_model
        from toolkit.recipes.schema import ModelConfig

        source = {"tiny": args.model[len("tiny:"):]} if args.model.startswith("tiny:") else {
            "preset": args.model}
        self.base = load_model(ModelConfig(**source))
        self.head_dir = args.head
        self.made: dict[str, Any] = {"default": self.base}

    def get(self, graft: str) -> Any:
        if graft not in self.made:
            self.made[graft] = self._make(graft)
        return self.made[graft]

    def _make(self, graft: str) -> Any:
        from toolkit.graft.augmented import AugmentedModel

        am = self.base
        if graft == "head":
            return AugmentedModel.from_pretrained(am.base, self.head_dir)
        top = am.parts.num_layers
        layers = {"all_layers": list(range(top)), "norm_late": [top - 2, top - 1]}.get(
            graft, am.graft_config.layers)
        config = dataclasses.replace(am.graft_config, layers=layers,
                                     early_exit_norm=True if graft.startswith("norm") else None)
        return AugmentedModel(am.base, config, am.tokenizer)


class Store:
    """OUT/league.json: the settings and every finished cell, written as each cell finishes.

    Several runs with the same settings may share it (`--worker`): a run computes a cell only
    while it holds the cell's claim (OUT/claims/CELL.lock, free again when its holder ends,
    however it ends), and every write reads the file again under OUT/league.lock and adds the
    one cell, so no run overwrites another's cells. The lock files are opened without following
    a link and never truncated or removed (filelock >= 4.3), so a link or file already at
    their names is refused or left as it is; a link or a file at OUT/claims is refused."""

    def __init__(self, path: Path, settings: dict):
        self.path, self.settings = path, settings
        self.claims = path.parent / "claims"
        if self.claims.is_symlink() or (self.claims.exists() and not self.claims.is_dir()):
            raise ToolkitError(f"{self.claims} is not a folder this script made (a link or a "
                               "file); move it away or pass another --out")
        self.claims.mkdir(exist_ok=True)
        self.lock = FileLock(path.parent / "league.lock")
        self.skipped: list[str] = []  # cells another run held the claim of
        self.data = {"format": FORMAT, "settings": settings, "cells": {}, "seconds": 0.0}
        self.reload()

    def reload(self) -> None:
        with self.lock:
            if not self.path.exists():
                return
            saved = json.loads(self.path.read_text())
        if saved.get("format") != FORMAT:
            raise ToolkitError(f"{self.path} was not written by this script; pass another --out")
        if saved["settings"] != self.settings:
            raise ToolkitError(f"{self.path} holds a run with other settings "
                               f"({saved['settings']}); pass another --out to start a new table")
        self.data = saved

    def cell(self, key: str, compute, *args: Any) -> Any:
        """The cell's value: computed as compute(*args) and saved, unless already there; None
        when another run is computing it (the key goes to `skipped`)."""
        return self.cells([key], lambda todo: {key: compute(*args)}).get(key)

    def cells(self, keys: list[str], compute) -> dict[str, Any]:
        """Several cells one computation gives: compute(the keys not yet saved) -> {key: value}
        for each of them, saved together. The cells the store holds, all of `keys` once
        computed; none when another run is computing one of them (they go to `skipped`)."""
        self.reload()
        todo = [k for k in keys if k not in self.data["cells"]]
        with contextlib.ExitStack() as held:
            for key in todo:
                claim = self.claim(key)
                try:
                    claim.acquire(timeout=0)
                except Timeout:
                    print(f"  {', '.join(todo)}: being computed by another run", flush=True)
                    self.skipped += todo
                    return {}
                held.callback(claim.release)
            self.reload()  # they may have been finished since the first look
            todo = [k for k in todo if k not in self.data["cells"]]
            if todo:
                began = time.perf_counter()
                values = compute(todo)
                took = time.perf_counter() - began
                self.update(lambda data: data["cells"].update(values), took)
                shared = f", {len(todo)} cells in one pass" if len(todo) > 1 else ""
                for key in todo:
                    print(f"  {key}: {values[key]} ({took:.0f} s{shared})", flush=True)
        return {k: self.data["cells"][k] for k in keys if k in self.data["cells"]}

    def claim(self, key: str) -> FileLock:
        return FileLock(self.claims / (re.sub(r"[^\w.=@-]", "_", key) + ".lock"))

    def drop(self, key: str) -> None:
        self.update(lambda data: data["cells"].pop(key, None))

    def update(self, change, seconds: float = 0.0) -> None:
        """Apply `change` to the store as it is on disk now, add `seconds` (a cell's time,
        saved with the cell: an interrupted run keeps it) and write it back."""
        with self.lock:
            self.reload()
            change(self.data)
            self.data["seconds"] += seconds
            with staging.replacing(self.path) as tmp:
                tmp.write_text(json.dumps(self.data, indent=1))

    def wait(self) -> None:
        """Wait until the cells other runs were computing are done (their claims free), then
        read the store again."""
        for key in self.skipped:
            with self.claim(key):
                pass
        self.reload()


def truthfulqa_cells(am: Any, rows: list[Row], args: argparse.Namespace,
                     out: Path) -> dict[str, dict]:
    """MC1/MC2/MC3 and their standard errors over the questions (cli.py eval's protocol) of
    rows on one graft with distinct modes, from one pass: each row's mode scores the same
    forward and the same early-layer logits (the costly part), with the row's own options."""
    from toolkit.eval import EvalConfig, run_eval

    decoding = row_decoding(rows[0]).with_methods({
        r.scored: dataclasses.replace(row_decoding(r).method(r.scored), enabled=False)
        for r in rows if r.scored != "greedy"})
    config = EvalConfig(task="truthfulqa", data_path=args.truthfulqa, limit=args.questions,
                        modes=[r.scored for r in rows], progress=False,
                        output_dir=str(out / "eval" / "+".join(r.name for r in rows)))
    items = run_eval(am, config, decoding)["items"]
    cells = {}
    for row in rows:
        cell = cells[f"{row.name}/truthfulqa"] = {}
        for metric in ("MC1", "MC2", "MC3"):
            values = [item[row.scored][metric] for item in items]
            cell[metric] = statistics.fmean(values)
            cell[f"{metric}_se"] = statistics.stdev(values) / math.sqrt(len(values)) \
                if len(values) > 1 else 0.0
    return cells


def scoring_groups(rows: list[Row]) -> list[list[Row]]:
    """The scored rows in their order, grouped so that each group is one TruthfulQA pass: one
    graft, each mode once."""
    groups: list[list[Row]] = []
    for row in (r for r in rows if r.scored):
        group = next((g for g in groups if g[0].graft == row.graft
                      and row.scored not in {r.scored for r in g}), None)
        if group is None:
            groups.append([row])
        else:
            group.append(row)
    return groups


def arithmetic_cell(am: Any, row: Row, temperature: float, args: argparse.Namespace) -> float:
    from toolkit.eval import EvalConfig
    from toolkit.eval.sweep import accuracy, questions

    items = questions(am, EvalConfig(task="arithmetic", limit=args.replies, temperatures=[1.0]))
    decoding = row_decoding(row, temperature, args.arith_tokens)
    return accuracy(am, items, decoding, row.hf, args.batch)


def reward_cell(am: Any, row: Row, args: argparse.Namespace) -> float:
    from toolkit.lpo import arith_writing
    from toolkit.lpo.config import ArithWritingConfig
    from toolkit.lpo.text_eval import mean_reward

    task = ArithWritingConfig(eval_per_kind=args.reward_prompts)
    chat = am.prompt_convention("auto") == "chat"
    records = arith_writing.make_prompts(am.tokenizer, task.eval_per_kind, "eval", task.seed,
                                         chat=chat)
    reward = arith_writing.ArithWritingReward(task.ngram, task.repetition_penalty)
    return mean_reward(am, records, reward, row_decoding(row), samples=task.eval_samples,
                       batch_size=args.batch, hf=row.hf)["all"]


def decode_ms(am: Any, row: Row, ids: torch.Tensor, args: argparse.Namespace) -> float:
    """Decode ms per token of one generate() call of the row."""
    from toolkit.bench.measure import StepTimer

    timer = StepTimer(ids.device)
    began = time.perf_counter()
    am.generate(ids, torch.ones_like(ids), decoding=row_decoding(row, 1.0, args.speed_tokens),
                streamer=timer, **row.hf)
    return timer.timings(began)[1]


def speed_cell(models: Models, rows: list[Row], args: argparse.Namespace) -> dict:
    """Tokens/s of every row relative to greedy at batch 8 (random 32-token prompts): after a
    warm-up call each, `--repeats` rounds over all the rows, the median per row."""
    ids = torch.randint(1, models.base.vocab_size, (8, 32),
                        generator=torch.Generator().manual_seed(0))
    ms: dict[str, list[float]] = {row.name: [] for row in rows}
    for round_ in range(args.repeats + 1):
        for row in rows:
            value = decode_ms(models.get(row.graft), row, ids, args)
            if round_:
                ms[row.name].append(value)
    greedy = statistics.median(ms["greedy"])
    return {name: greedy / statistics.median(values) for name, values in ms.items()}


def truthfulqa_group(models: Models, group: list[Row], store: Store,
                     args: argparse.Namespace, out: Path) -> None:
    """The TruthfulQA cells of a scoring group: its rows not yet in the store, in one pass."""
    rows = {f"{r.name}/truthfulqa": r for r in group}
    am = models.get(group[0].graft)
    store.cells(list(rows), lambda todo: truthfulqa_cells(am, [rows[k] for k in todo], args,
                                                          out))


def run_rows(models: Models, rows: list[Row], store: Store, args: argparse.Namespace,
             out: Path) -> None:
    for group in scoring_groups(rows) if args.truthfulqa else []:
        truthfulqa_group(models, group, store, args, out)
    for row in rows:
        am = models.get(row.graft)
        for t in TEMPERATURES if row.sampled else (None,):
            key = f"{row.name}/arithmetic@{'own' if t is None else f'T={t:g}'}"
            store.cell(key, arithmetic_cell, am, row, t or 1.0, args)
        store.cell(f"{row.name}/reward", reward_cell, am, row, args)
    if args.worker:
        return  # the run it helps times the rows and writes the table
    store.reload()
    if any(row.name not in store.data["cells"].get("speed", {}) for row in rows):
        store.drop("speed")  # a new row: time them all again, side by side
    store.cell("speed", speed_cell, models, rows, args)
    store.wait()


def _number(cells: dict, key: str, fmt: str = "{:.3f}") -> str:
    return fmt.format(cells[key]) if key in cells else ""


def markdown(rows: list[Row], data: dict) -> str:
    """The table: one line per row, blank where a column does not apply."""
    cells, settings = data["cells"], data["settings"]
    lines = ["| method | MC1 | MC2 | MC3 | arith T=1 | arith T=2 | arith, own T | reward | "
             "tokens/s vs greedy |", "|---|" + "---:|" * 8]
    for row in rows:
        tqa = cells.get(f"{row.name}/truthfulqa", {})
        mc = [f"{tqa[m]:.3f} +- {tqa[m + '_se']:.3f}" if m in tqa else "" for m in
              ("MC1", "MC2", "MC3")]
        arith = [_number(cells, f"{row.name}/arithmetic@{k}") for k in ("T=1", "T=2", "own")]
        speed = cells.get("speed", {})
        rel = f"{speed[row.name]:.2f}x" if row.name in speed else ""
        lines.append(f"| {row.label} | " + " | ".join(
            [*mc, *arith, _number(cells, f"{row.name}/reward"), rel]) + " |")
    tqa = any(k.endswith("/truthfulqa") for k in cells)
    lines.append(f"\n{settings['model']}: TruthfulQA first {settings['questions']} questions "
                 f"({'run' if tqa else 'no CSV given: blank'}); arithmetic "
                 f"{settings['replies']} questions x 1 reply a cell; reward "
                 f"{2 * settings['reward_prompts']} prompts x 3 replies; one torch thread; "
                 f"{data['seconds'] / 3600:.2f} h of computing cells in all.")
    return "\n".join(lines) + "\n"


def update_figures(path: Path, model: str, table: str) -> None:
    """Put `table` between the model's markers in `path` (appended under a heading when the
    markers are missing); the rest of the file is kept as it is."""
    start, end = f"<!-- league:{model} -->", f"<!-- /league:{model} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{start}\n{table}{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n### League table: {model}\n\n{block}\n"
    path.write_text(text, encoding="utf-8")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a preset (smollm2-135m-instruct, gemma3-270m), or "
                                      "tiny:FAMILY for the built-in tiny model")
    parser.add_argument("--truthfulqa", help="a CSV in the TruthfulQA columns (no CSV: the "
                                             "TruthfulQA columns stay blank)")
    parser.add_argument("--questions", type=int, default=200, help="TruthfulQA questions")
    parser.add_argument("--replies", type=int, default=128, help="arithmetic replies a cell")
    parser.add_argument("--reward-prompts", type=int, default=12, help="task prompts per kind")
    parser.add_argument("--head", help="the learned head's checkpoint (its row is left out "
                                       "without one)")
    parser.add_argument("--rows", default=",".join(r.name for r in ROWS),
                        help="comma-separated rows (greedy, the baseline, always runs)")
    parser.add_argument("--arith-tokens", type=int, default=12)
    parser.add_argument("--speed-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="generation batch size")
    parser.add_argument("--worker", action="store_true",
                        help="help a run with the same arguments that is under way (on another "
                             "core or machine sharing --out): compute the cells nobody has "
                             "claimed, then stop; that run times the rows and writes the table")
    parser.add_argument("--out", default=None, help="default: bench_results/league-MODEL")
    parser.add_argument("--figures", default=str(Path(__file__).parents[1] / "docs" /
                                                  "figures.md"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(1)
    began = time.perf_counter()
    chosen = args.rows.split(",")
    unknown = sorted(set(chosen) - {r.name for r in ROWS})
    if unknown:
        print(f"error: unknown rows {unknown}; rows: {', '.join(r.name for r in ROWS)}",
              file=sys.stderr)
        return 2
    rows = [r for r in ROWS if (r.name in chosen or r.name == "greedy")  # the baseline
            and (r.graft != "head" or args.head)]
    out = Path(args.out or f"bench_results/league-{args.model.replace(':', '-')}")
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("model", "questions", "replies", "reward_prompts",
                                              "arith_tokens", "speed_tokens", "repeats", "head")}
    try:
        store = Store(out / "league.json", settings)
        print(f"league table of {args.model}: {len(rows)} rows, one torch thread; cells in "
              f"{store.path}", flush=True)
        run_rows(Models(args), rows, store, args, out)
    except (ToolkitError, OSError) as err:  # OSError: e.g. a link at a lock's name, refused
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.worker:
        print(f"worker done: {len(store.data['cells'])} cells in {store.path}")
        return 0
    took = time.perf_counter() - began
    table = markdown(rows, store.data)
    (out / "league.md").write_text(table)
    update_figures(Path(args.figures), args.model, table)
    print(table)
    print(f"took {took / 60:.1f} min this run, {store.data['seconds'] / 3600:.2f} h of computing "
          f"cells in all; the table is in {out / 'league.md'} and {args.figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
