"""One timed round of a bench mode: its decoding options, its prompts, its timing.

`toolkit.bench.run` schedules the rounds; the bench's second process (`toolkit.bench.worker`)
runs the rounds handed to it with the same functions.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import torch
from transformers import LogitsProcessorList

from toolkit import methods
from toolkit.bench.config import FLOOR, SAMPLE, BenchConfig
from toolkit.bench.measure import FloorProcessor, PeakMemory, StepTimer
from toolkit.methods.options import DecodingConfig, mode_decoding


def bench_decoding(name: str, config: BenchConfig, decoding: DecodingConfig) -> DecodingConfig:
    """The decoding config of a bench mode: `toolkit.methods.options.mode_decoding` of the recipe's
    options with the bench's token count and seed (`sled_kN`: SLED with K = N; the floor
    decodes greedily; `sample` samples with every method off)."""
    base = dataclasses.replace(decoding, max_new_tokens=config.new_tokens, seed=config.seed)
    if name.startswith("sled_k"):
        sled = dataclasses.replace(base.sled, evolution_scale=int(name[len("sled_k"):]))
        return mode_decoding(dataclasses.replace(base, sled=sled), "sled")
    if name == SAMPLE:
        return dataclasses.replace(mode_decoding(base, methods.GREEDY), do_sample=True)
    return mode_decoding(base, methods.GREEDY if name == FLOOR else name)


def generate_round(am: Any, name: str, decoding: DecodingConfig, ids: torch.Tensor,
                   mask: torch.Tensor, timer: StepTimer) -> None:
    """One generate() of mode `name` (the floor: the base model's greedy generate() under the
    tap with the extra projection), its steps timed by `timer`."""
    if name != FLOOR:
        am.generate(ids, attention_mask=mask, decoding=decoding, streamer=timer)
        return
    processors = LogitsProcessorList([FloorProcessor(am.tap)])
    with torch.no_grad(), am.tap.capture(last_only=True):
        am.base.generate(ids, attention_mask=mask, logits_processor=processors,
                         do_sample=False, max_new_tokens=decoding.max_new_tokens,
                         streamer=timer)


def measure(am: Any, name: str, decoding: DecodingConfig, ids: torch.Tensor,
            memory: PeakMemory) -> dict[str, float]:
    """One round: prefill and per-token decode times (ms, wall and the process's CPU time), new
    tokens, peak memory, the 1-minute load average."""
    timer = StepTimer(ids.device)
    mask = torch.ones_like(ids)
    memory.start()
    start = time.perf_counter()
    generate_round(am, name, decoding, ids, mask, timer)
    peak = memory.stop()
    prefill, decode, steps = timer.timings(start)
    return {"prefill_ms": prefill, "decode_ms_per_token": decode, "new_tokens": steps,
            "decode_cpu_ms_per_token": timer.decode_cpu_ms(), "peak_bytes": peak,
            "load_1m": os.getloadavg()[0]}


def prompts(am: Any, config: BenchConfig, device: torch.device) -> dict[int, torch.Tensor]:
    """batch size -> random prompt ids (batch, prompt_len), seeded by the bench's seed."""
    generator = torch.Generator().manual_seed(config.seed)
    vocab = am.vocab_size
    return {b: torch.randint(1, vocab, (b, config.prompt_len), generator=generator).to(device)
            for b in config.batch_sizes}
