"""The side-by-side report of an evaluation: Markdown always, a PNG bar chart when matplotlib
is importable (it is not a dependency of the toolkit)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from toolkit.io import reports

KEY = "eval.output_dir"
# Every file an evaluation may write into eval.output_dir (plain run, or a temperature sweep).
FILES = ("results.json", "report.md", "report.png", "sweep.json", "sweep.md", "sweep.png")

def markdown(result: dict[str, Any]) -> str:
    """A table with one row per metric and one column per decoding mode."""
    modes = list(result["totals"])
    metrics = [k for k in result["totals"][modes[0]] if isinstance(result["totals"][modes[0]][k],
                                                                   (int, float))]
    lines = [
        f"# Evaluation: {result['task']}",
        "",
        f"Data: `{result['data_path']}` — {result['num_items']} items scored, "
        f"{len(result['skipped_rows'])} rows skipped.",
        "",
        "| metric | " + " | ".join(modes) + " |",
        "|---|" + "---:|" * len(modes),
    ]
    for metric in metrics:
        cells = [f"{result['totals'][m][metric]:.4f}" for m in modes]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    if result["skipped_rows"]:
        lines += ["", "Skipped rows:", ""] + [f"- {r}" for r in result["skipped_rows"]]
    if result.get("plot_note"):
        lines += ["", result["plot_note"]]
    return "\n".join(lines) + "\n"


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def bar_chart(result: dict[str, Any], path: Path, metrics: list[str]) -> None:
    """Grouped bars: metrics on the x axis, one bar per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(result["totals"])
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(metrics) * len(modes) / 2, 3.5))
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        xs = [i + j * width for i in range(len(metrics))]
        ax.bar(xs, [result["totals"][mode][m] for m in metrics], width, label=mode)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(metrics))], metrics)
    ax.set_title(f"{result['task']}: decoding modes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_report(result: dict[str, Any], out_dir: Path, metrics: list[str]) -> list[Path]:
    """Write report.md (+ report.png when possible) as reports this toolkit owns
    (`toolkit.io.reports`); returns the written paths."""
    written = []
    if matplotlib_available() and metrics:
        written.append(reports.write(out_dir, "report.png", KEY,
                                     lambda tmp: bar_chart(result, tmp, metrics)))
    else:
        result["plot_note"] = ("No PNG chart: matplotlib is not installed "
                               "(`pip install matplotlib` to get report.png).")
    return [reports.write_text(out_dir, "report.md", KEY, markdown(result))] + written
