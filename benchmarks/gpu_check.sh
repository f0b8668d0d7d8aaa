#!/usr/bin/env bash
# GPU check, for a machine with one CUDA GPU: the GPU-marked tests (pytest -m gpu), then the
# decoding bench on a Llama-2-7B-shaped model with random weights in bfloat16 (every mode at
# batches 1 and 8, median of 5 repeats, plus multiple-choice scoring throughput), then SLED and
# DoLa against greedy at batch 1 with fewer kernel launches: `runtime.compile=true`, which runs
# SLED's terms and cosines and DoLa's JSD as torch.compile graphs (a few fused kernels instead
# of about 50 launches each). Installs and downloads nothing; about 7 minutes, each step under
# a time limit (on an H200 the tests took 15 s and the bench with 3 repeats 2.5 minutes). It
# runs only what fits the devices it finds: a test needing more CUDA devices than there are
# (the documented DDP/FSDP recipes ask for 4 and 8) skips with its reason, and the 7B bench needs one GPU with
# at least 20 GiB; summary.md lists every skip and why.
#   bash benchmarks/gpu_check.sh OUT_DIR
#   bash benchmarks/gpu_check.sh --tiny OUT_DIR   # the same steps on CPU, tiny shape (CI)
#   bash benchmarks/gpu_check.sh [--tiny] --serve OUT_DIR
# --serve runs instead, as its own call (so each call stays under 10 minutes), the vLLM step:
# benchmarks/serve_speed.py on a Llama-2-7B-shaped checkpoint with random weights (bfloat16)
# served by vLLM against AugmentedModel.generate, plain and SLED, at 1, 8, 32 and 64 concurrent
# requests (--tiny: the tiny test checkpoint on CPU); into OUT_DIR/serve/ and serve-summary.md.
# Where vLLM is not installed it says so in one line and exits 0.
# Writes into OUT_DIR: device.txt, pytest-gpu.log, pytest-gpu.xml, bench/ and bench-compiled/
# (bench.md, bench.json) and summary.md (device, test result line, what was skipped and why,
# SLED's and DoLa's ratios to greedy at batch 1, by default and compiled, against the GPU goal
# SLED <= 1.10x greedy, the bench tables). Exits non-zero when a step that ran fails.
set -euo pipefail
tiny=0
serve=0
if [[ "${1:-}" == "--tiny" ]]; then tiny=1; shift; fi
if [[ "${1:-}" == "--serve" ]]; then serve=1; shift; fi
out=${1:?usage: bash benchmarks/gpu_check.sh [--tiny] [--serve] OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if (( tiny )); then
  echo "cpu (--tiny: tiny shape, float32)" > "$out/device.txt"
  bench_skip=""
  shape=(model.random_shape=tiny model.dtype=float32 'bench.batch_sizes=[1,2]'
         bench.new_tokens=4 bench.repeats=1 bench.warmup=0 'bench.sled_ks=[10]'
         bench.eval_questions=2 bench.eval_prompt_len=8 bench.eval_answers=3
         bench.eval_answer_len=3)
  compiled=(model.random_shape=tiny model.dtype=float32 bench.new_tokens=4 bench.repeats=1
            bench.warmup=1 'bench.sled_ks=[10]')
else
  python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else
    'gpu_check: no CUDA GPU visible to torch; run it on a GPU machine (or pass --tiny)')"
  python3 -c "import torch; p = torch.cuda.get_device_properties(0);
print(f'{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, '
      f'{torch.cuda.device_count()} CUDA device(s)')" > "$out/device.txt"
  bench_skip=$(python3 -c "import torch; gib = torch.cuda.get_device_properties(0).total_memory
print('' if gib >= 20 * 2**30 else f'the 7B bf16 bench needs 20 GiB on one GPU, found {gib / 2**30:.0f}')")
  shape=(model.random_shape=llama-7b model.dtype=bfloat16 model.device_map=cuda
         'bench.batch_sizes=[1,8]' bench.new_tokens=32 bench.repeats=5 bench.eval_questions=8)
  compiled=(model.random_shape=llama-7b model.dtype=bfloat16 model.device_map=cuda
            bench.new_tokens=32 bench.repeats=5 bench.warmup=1 'bench.sled_ks=[10,50]')
fi

if (( serve )); then
  if ! python3 -c "import vllm" > /dev/null 2>&1; then
    echo "gpu_check --serve: vLLM is not installed here (add it: python3 -m toolkit.serving.install)" \
      | tee "$out/serve-summary.md"
    exit 0
  fi
  if (( tiny )); then serve_args=(--tiny --concurrency 1 2 --tokens 4)
  else serve_args=(--random-shape llama-7b); fi
  status=0
  timeout 540 python3 benchmarks/serve_speed.py --out "$out/serve" "${serve_args[@]}" \
    > "$out/serve.txt" 2> "$out/serve.log" || status=$?
  { echo "# vLLM serving check"; echo; echo "device: $(cat "$out/device.txt")"; echo
    if (( status == 0 )); then cat "$out/serve.txt"; else
      echo "serve_speed.py failed (exit $status); the end of $out/serve.log:"; tail -20 "$out/serve.log"
    fi; } > "$out/serve-summary.md"
  cat "$out/serve-summary.md"
  exit "$status"
fi

status=0
timeout 240 python3 -m pytest -m gpu -q -rs -p no:cacheprovider --junitxml="$out/pytest-gpu.xml" \
  > "$out/pytest-gpu.log" 2>&1 || status=$?
if [[ -n "$bench_skip" ]]; then
  echo "$bench_skip" > "$out/bench-skipped.txt"
else
  timeout 420 python3 cli.py bench recipes/bench_llama_d512.yaml "${shape[@]}" \
    graft.head.level=token bench.progress=false "bench.output_dir=$out/bench" \
    > "$out/bench.log" 2>&1 || status=$?
  # the warm-up round compiles; the timed rounds replay the compiled graphs
  timeout 300 python3 cli.py bench recipes/bench_llama_d512.yaml "${compiled[@]}" \
    runtime.compile=true 'bench.batch_sizes=[1]' 'bench.modes=[greedy,floor,sled,dola]' \
    bench.eval_questions=0 bench.plot=false bench.progress=false \
    "bench.output_dir=$out/bench-compiled" > "$out/bench-compiled.log" 2>&1 || status=$?
fi

python3 - "$out" <<'EOF'
import json, sys
import xml.etree.ElementTree as ET
from pathlib import Path
out = Path(sys.argv[1])
log = (out / "pytest-gpu.log").read_text().strip().splitlines()
lines = ["# GPU check", "", f"device: {(out / 'device.txt').read_text().strip()}",
         f"pytest -m gpu: {log[-1] if log else 'no output'}", ""]
xml = out / "pytest-gpu.xml"
skips = [(f"{case.get('classname')}::{case.get('name')}", skip.get("message", ""))
         for case in (ET.parse(xml).iter("testcase") if xml.exists() else [])
         for skip in case.findall("skipped")]
lines += ["skipped (does not fit this machine):", *[f"- {t}: {why}" for t, why in skips]] \
    if skips else ["skipped: nothing"]
lines.append("")
skipped_bench = out / "bench-skipped.txt"
if skipped_bench.exists():
    lines.append(f"bench: skipped, {skipped_bench.read_text().strip()}")
else:
    tables = []
    for folder, how in (("bench", "default"), ("bench-compiled", "runtime.compile=true")):
        bench = out / folder / "bench.json"
        if not bench.exists():
            lines.append(f"bench ({how}): no result; see {out / (folder + '.log')}")
            continue
        for r in json.loads(bench.read_text())["rows"]:
            if (r["mode"].startswith("sled_k") or r["mode"] == "dola") and r["batch"] == 1:
                goal = " (goal <= 1.10x)" if r["mode"].startswith("sled_k") else ""
                lines.append(f"{r['mode']} at batch 1, {how}: {r['ratio_to_greedy']:.2f}x "
                             f"greedy{goal}")
        tables += ["", f"## {how}", "", (out / folder / "bench.md").read_text()]
    lines += tables
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
exit "$status"
