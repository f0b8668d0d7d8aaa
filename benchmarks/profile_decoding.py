"""Where each decoding step's time goes, per mode and batch size (torch.profiler).

    OMP_NUM_THREADS=1 python benchmarks/profile_decoding.py [--batches 1,8,32] [--modes ...]
        [--shape llama-d512] [--new-tokens 16] [--out bench_results/profile_decoding.json]

Each (batch, mode) is decoded once untimed, then once under torch.profiler. The step is split
into: the model's forward pass; the tap's projection of the N early rows through lm_head; the
method's own math (the SLED/DoLa processor minus that projection); the temperature and filter
processors; and the rest of transformers' loop (sampling, stopping criteria, streamer, cache
bookkeeping). Times are per generated token (prefill included, divided by the new tokens),
with the profiler's overhead; the shares are what to read. The top operators by self time are
listed per row. One thread unless OMP_NUM_THREADS says otherwise.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from toolkit.bench import BenchConfig
from toolkit.bench.measure import StepTimer
from toolkit.bench.rounds import bench_decoding, generate_round
from toolkit.core import runtime
from toolkit.graft import AugmentedModel
from toolkit.graft import processors as P
from toolkit.graft.tap import EarlyExitTap
from toolkit.testing import random_model

PARTS = {
    "projection": (EarlyExitTap, "early_logits"),
    "method": (P.EarlyExitLogitsProcessor, "__call__"),
    "temperature": (P.AdaptiveTemperatureLogitsProcessor, "__call__"),
    "filter": (P.FilterLogitsProcessor, "__call__"),
}


def _label(owner, name: str, label: str) -> None:
    original = getattr(owner, name)

    def labelled(*args, **kwargs):
        with record_function(label):
            return original(*args, **kwargs)

    setattr(owner, name, labelled)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--modes", default="greedy,floor,sample,sled_k50,dola,top_n_sigma,"
                                           "adaptive,composed")
    parser.add_argument("--shape", default="llama-d512")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--top-ops", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench_results/profile_decoding.json"))
    return parser.parse_args()


def _profile_one(am, mode: str, config: BenchConfig, ids: torch.Tensor, top: int) -> dict:
    decoding = bench_decoding(mode, config, am.decoding)
    mask = torch.ones_like(ids)
    generate_round(am, mode, decoding, ids, mask, StepTimer(ids.device))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        generate_round(am, mode, decoding, ids, mask, StepTimer(ids.device))
        total = (time.perf_counter() - start) * 1e3
    steps = config.new_tokens
    events = prof.key_averages()
    part = {e.key: e.cpu_time_total / 1e3 / steps for e in events if e.key.startswith("part:")}
    projection = part.get("part:projection", 0.0)
    row = {"forward": part.get("part:forward", 0.0), "projection": projection,
           "method": max(0.0, part.get("part:method", 0.0) - projection),
           "temperature": part.get("part:temperature", 0.0),
           "filter": part.get("part:filter", 0.0)}
    if mode == "floor":  # the floor's projection runs in its own processor, not in `method`
        row["method"] = 0.0
    row["other"] = total / steps - sum(row.values())
    ops = sorted((e for e in events if not e.key.startswith("part:")),
                 key=lambda e: -e.self_cpu_time_total)[:top]
    row["top_ops"] = [(e.key, e.self_cpu_time_total / 1e3 / steps, e.count // steps) for e in ops]
    return {"ms_per_token": total / steps, **row}


def main() -> None:
    args = _parse()
    runtime.configure(runtime.RuntimeConfig())
    print(runtime.describe())
    for label, (owner, name) in PARTS.items():
        _label(owner, name, f"part:{label}")
    am = AugmentedModel.graft(random_model(args.shape, seed=0))
    _label(am.base, "forward", "part:forward")
    batches = [int(b) for b in args.batches.split(",")]
    config = BenchConfig(batch_sizes=batches, new_tokens=args.new_tokens, sled_ks=[50])
    rows = []
    print("| batch | mode | ms/token | forward | projection | method | temperature | filter "
          "| other | top operators (self ms/token x calls/token) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for b in batches:
        ids = torch.randint(1, am.vocab_size, (b, config.prompt_len),
                            generator=torch.Generator().manual_seed(0))
        for mode in args.modes.split(","):
            row = {"batch": b, "mode": mode, **_profile_one(am, mode, config, ids, args.top_ops)}
            rows.append(row)
            ops = "; ".join(f"{k} {v:.2f} x{c}" for k, v, c in row["top_ops"])
            print(f"| {b} | {mode} | {row['ms_per_token']:.1f} | " + " | ".join(
                f"{row[k]:.1f}" for k in ("forward", "projection", "method", "temperature",
                                          "filter", "other")) + f" | {ops} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runtime": runtime.describe(), "shape": args.shape,
                                    "new_tokens": args.new_tokens, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
