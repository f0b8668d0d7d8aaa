"""`run_eval(model, config)`: score or generate with every decoding mode, write the results.

Writes `results.json` (settings, totals per mode, per-item results, skipped rows) and
`report.md` (+ `report.png` when matplotlib is importable) under `config.output_dir`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.eval import factor, generation, truthfulqa
from toolkit.eval.config import SCORING_TASKS, EvalConfig
from toolkit.eval.data import BadRows
from toolkit.eval.report import FILES, KEY, write_report
from toolkit.eval.scoring import score_pairs
from toolkit.io import reports
from toolkit.methods.options import DecodingConfig, apply_preset, mode_decoding

SCORING = {"truthfulqa": truthfulqa, "factor": factor}


def _item_pairs(task: str, item: dict[str, Any], config: EvalConfig) -> list[tuple[str, str]]:
    if task == "truthfulqa":
        return truthfulqa.pairs(item, config.prompt_template)
    return factor.pairs(item)


def _run_scoring(am: Any, config: EvalConfig, decoding: DecodingConfig,
                 bad: BadRows) -> tuple[list, dict, dict]:
    module = SCORING[config.task]
    items = module.load(config.data_path, bad, config.limit)
    modes = config.active_modes
    per_item = [_item_pairs(config.task, it, config) for it in items]
    flat = [p for pairs in per_item for p in pairs]
    scores = score_pairs(am, flat, modes, decoding, config.batch_size, config.padding_side,
                         config.progress, config.shared_prefix)
    records = [_record(it) for it in items]
    totals: dict[str, dict[str, float]] = {}
    for mode in modes:
        start = 0
        for rec, it, pairs in zip(records, items, per_item, strict=True):
            rec[mode] = module.item_result(it, scores[mode][start : start + len(pairs)])
            start += len(pairs)
        totals[mode] = {m: sum(r[mode][m] for r in records) / len(records)
                        for m in module.METRICS}
    settings = {m: dataclasses.asdict(decoding.method(m))
                for m in modes if m != methods.GREEDY}
    return records, totals, settings


def _run_generation(am: Any, config: EvalConfig, decoding: DecodingConfig,
                    bad: BadRows) -> tuple[list, dict, dict]:
    items = generation.load(config.task, config.data_path, bad, config.limit)
    records = [_record(it) for it in items]
    totals, decodings = {}, {}
    for mode in config.active_modes:
        results, totals[mode] = generation.run_mode(am, config.task, items, mode, config,
                                                    decoding)
        decodings[mode] = dataclasses.asdict(mode_decoding(decoding, mode))
        for rec, res in zip(records, results, strict=True):
            rec[mode] = res
    return records, totals, decodings


def _record(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k in ("line", "question", "prefix", "completion",
                                                   "gold", "best")}


def _require_augmented(model: Any) -> Any:
    if not all(hasattr(model, a) for a in ("base", "tap", "tokenizer", "generate")):
        raise ConfigError(
            f"run_eval needs an AugmentedModel (got {type(model).__name__}); graft the base "
            "model first with AugmentedModel.graft(model, tokenizer=...)"
        )
    if model.tokenizer is None:
        raise ConfigError("the AugmentedModel has no tokenizer; pass tokenizer= when grafting")
    return model


def run_eval(model: Any, config: EvalConfig,
             decoding: DecodingConfig | None = None) -> dict[str, Any]:
    """Evaluate every configured decoding mode on `config.data_path` and write the results.

    Args:
        model: an AugmentedModel with a tokenizer.
        config: task, data file, modes, preset and output folder.
        decoding: the method settings (the recipe's `decoding` section; default: the
            model's own `model.decoding`); the task preset is applied over it.

    Returns:
        The results (also in `config.output_dir/results.json`): task, modes, settings (the
        options each mode ran with), totals per mode, per-item results, skipped rows, files.
        With `config.temperatures`, the sweep's table instead (`toolkit.eval.sweep`).

    Raises:
        ConfigError: options the model cannot run (e.g. SLED's K above the vocabulary).
        DataError: a missing file, a bad row under on_bad_row='error', or a file in
            `config.output_dir` this toolkit did not write (checked before anything runs).
    """
    am = _require_augmented(model)
    reports.check(Path(config.output_dir), FILES, KEY)
    decoding = decoding or am.decoding
    if config.temperatures:
        from toolkit.eval.sweep import run_sweep

        return run_sweep(am, config, decoding)
    preset = config.preset_name()
    if preset is not None:
        decoding = apply_preset(decoding, preset)
    for mode in config.active_modes:
        am.check_decoding(mode_decoding(decoding, mode))
    bad = BadRows(config.on_bad_row, hint="fix the row, or set eval.on_bad_row=skip to skip it")
    runner = _run_scoring if config.task in SCORING_TASKS else _run_generation
    records, totals, settings = runner(am, config, decoding, bad)
    result = {
        "task": config.task, "data_path": str(config.data_path), "modes": list(totals),
        "num_items": len(records), "settings": settings, "totals": totals,
        "skipped_rows": bad.skipped, "items": records,
    }
    out = Path(config.output_dir)
    metrics = list(next(iter(totals.values())))
    result["files"] = [str(p) for p in write_report(result, out, metrics)]
    result["files"].append(str(out / "results.json"))
    reports.write_text(out, "results.json", KEY, json.dumps(result, indent=1))
    return result
