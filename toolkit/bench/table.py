"""The bench's printed / Markdown table and its optional plot (matplotlib is optional)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

COLUMNS = [("mode", "{}"), ("batch", "{}"), ("prefill_ms", "{:.1f}"),
           ("decode_ms_per_token", "{:.2f}"), ("tokens_per_s", "{:.1f}"),
           ("ratio_to_greedy", "{:.2f}x"), ("ratio_to_floor", "{:.2f}x"),
           ("cpu_ratio_to_floor", "{:.2f}x"), ("math_ms", "{:.2f}"),
           ("math_vs_log_softmax", "{:.2f}x"), ("peak_mb", "{:.1f}")]
HEADERS = ["mode", "batch", "prefill ms", "decode ms/token", "tokens/s", "vs greedy",
           "vs floor", "CPU time vs floor", "math ms", "math / log_softmax", "peak MB"]


def markdown_table(result: dict[str, Any]) -> str:
    """One row per (batch, mode), medians over repeats; a header line names the setting."""
    info, cfg = result["model"], result["config"]
    lines = [
        f"{info['model_type']} d={info['hidden_size']} layers={info['num_layers']} "
        f"V={info['vocab_size']} N={info['candidate_layers']} candidate layers, "
        f"{info['dtype']} on {info['device']}, {result['torch_threads']} torch threads "
        f"({result.get('allocator', 'allocator not configured')}); "
        f"{result.get('decoding_math', 'SLED/DoLa CPU math: torch ops')}; "
        f"prompt {cfg['prompt_len']} tokens, {cfg['new_tokens']} new tokens, median of "
        f"{cfg['repeats']} interleaved repeats after {cfg['warmup']} warm-up; "
        f"memory: {result['memory_method']}; {_load_line(result)}",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|---|" + "---:|" * (len(HEADERS) - 1),
    ]
    columns, headers = list(COLUMNS), list(HEADERS)
    if "ratio_to_sample" in result["rows"][0]:
        columns.insert(7, ("ratio_to_sample", "{:.2f}x"))
        headers.insert(7, "vs sample")
    if "allocator" in result["rows"][0]:
        columns.insert(1, ("allocator", "{}"))
        headers.insert(1, "allocator")
        columns.insert(-1, ("ratio_to_allocator", "{:.2f}x"))
        headers.insert(-1, f"vs {result['rows'][0]['allocator']}")
    lines[2:] = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for row in result["rows"]:
        lines.append("| " + " | ".join(fmt.format(row[k]) if k in row else "-"
                                       for k, fmt in columns) + " |")
    if result.get("eval_rows"):
        lines += ["", *eval_table(result)]
    return "\n".join(lines)


def _load_line(result: dict[str, Any]) -> str:
    """The 1-minute load average over the run's samples, and what the math columns mean."""
    loads = sorted(s["load_1m"] for s in result["samples"] if "load_1m" in s)
    load = (f"load average {loads[0]:.2f}-{loads[-1]:.2f} (median {loads[len(loads) // 2]:.2f})"
            if loads else "load average not recorded")
    return (f"{load}; math: the mode's per-step decoding math on one captured step, against one "
            "log_softmax over its early logits (CPU time on a CPU)")


def eval_table(result: dict[str, Any]) -> list[str]:
    """Lines of the multiple-choice scoring throughput table."""
    cfg = result["config"]
    lines = [
        f"Multiple-choice scoring (truthfulqa preset): {cfg['eval_questions']} questions of "
        f"{cfg['eval_prompt_len']} tokens x {cfg['eval_answers']} answers of "
        f"{cfg['eval_answer_len']} tokens, {cfg['eval_batch_size']} answers per forward pass",
        "",
        "| mode | prompt | seconds | questions/s | answers/s | vs greedy | vs rerun |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["eval_rows"]:
        prompt = "shared (KV cache)" if row["shared_prefix"] else "rerun per answer"
        lines.append(f"| {row['mode']} | {prompt} | {row['seconds']:.2f} | "
                     f"{row['questions_per_s']:.2f} | {row['answers_per_s']:.1f} | "
                     f"{row['ratio_to_greedy']:.2f}x | {row['speedup']:.2f}x |")
    return lines


def plot_available() -> bool:
    """Whether matplotlib (optional) is importable, so `plot` can draw."""
    return importlib.util.find_spec("matplotlib") is not None


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """Bars of decode ms/token per mode, one group per batch size, as a PNG at `path`; None
    without matplotlib."""
    if not plot_available():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in result["rows"]})
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 3.5), squeeze=False)
    for ax, b in zip(axes[0], batches, strict=True):
        rows = [r for r in result["rows"] if r["batch"] == b]
        ax.bar([r["mode"] for r in rows], [r["decode_ms_per_token"] for r in rows])
        ax.set_title(f"batch {b}")
        ax.set_ylabel("decode ms/token")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
