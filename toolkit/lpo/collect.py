"""Preference-data collection (docs/methods.md section 6): N replies per prompt with temperatures from the head.

Prompts are split into fixed chunks of `prompts_per_batch`; all N replies of a chunk's prompts
come from one `AugmentedModel.generate` call seeded by (seed, chunk number), and the pair of a
prompt is picked with a generator seeded by (seed, prompt id). So a rerun after an interruption
(which skips prompts already written) produces byte-identical lines to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from tqdm.auto import tqdm

from toolkit.core.errors import DataError
from toolkit.graft.prompting import left_pad, token_ids
from toolkit.io import provenance
from toolkit.io.files import exclusive
from toolkit.lpo import pairs
from toolkit.lpo.cache import model_fingerprint
from toolkit.lpo.config import CollectConfig
from toolkit.lpo.rewards import Reward, build_reward
from toolkit.methods.options import AdaptiveOptions, DecodingConfig, pinned

if TYPE_CHECKING:
    from toolkit.graft.augmented import AugmentedModel


@dataclass
class CollectStats:
    """What one `collect_pairs` call did (counts of this run, plus prompts skipped as done)."""

    prompts: int
    skipped: int
    pairs: int
    dropped: int
    replies: int
    seconds: float


class _OpenFiles(NamedTuple):
    """The files a collection appends to: the pairs, and the prompts dropped for equal rewards."""

    pairs: BinaryIO
    dropped: BinaryIO


def _prompt_records(prompts) -> list[dict]:
    if isinstance(prompts, (str, Path)):
        return pairs.load_prompts(prompts)
    records = []
    for i, obj in enumerate(prompts):
        records.append(pairs.parse_prompt(obj, "prompts", i + 1))
    if len({r["id"] for r in records}) != len(records):
        raise DataError("prompts: prompt ids repeat; give each prompt a distinct 'id'")
    return records


def _prompt_ids(model, record: dict) -> list[int]:
    if "prompt_ids" in record:
        return [int(i) for i in record["prompt_ids"]]
    if model.tokenizer is None:
        raise DataError(f"prompt {record['id']!r} is text but the model has no tokenizer")
    return token_ids(model.tokenizer, record["prompt"])


def _pad_id(model) -> int:
    tok = model.tokenizer
    if tok is not None and tok.pad_token_id is not None:
        return int(tok.pad_token_id)
    pad = model.base.generation_config.pad_token_id
    return 0 if pad is None else int(pad)


def _decode(model, ids: list[int]) -> str:
    if model.tokenizer is None:
        return ""
    return model.tokenizer.decode(ids, skip_special_tokens=True)


def _sample_chunk(model, chunk: list[dict], config: CollectConfig, chunk_no: int) -> list[list[dict]]:
    """Per prompt of the chunk, its N replies as {reply_ids, temperature_index, text}."""
    rows = [_prompt_ids(model, r) for r in chunk for _ in range(config.num_replies)]
    input_ids, attention_mask = left_pad(rows, _pad_id(model))
    decoding = pinned(DecodingConfig(
        do_sample=True,
        adaptive_temperature=AdaptiveOptions(enabled=True, choice="sample"),
        max_new_tokens=config.max_new_tokens,
        seed=(config.seed * 1_000_003 + chunk_no) % 2**31,
    ))
    out = model.generate(input_ids, attention_mask, decoding=decoding, return_records=True)
    replies = out.sequences[:, input_ids.shape[1] :].cpu()
    keep = out.reply_mask.cpu()
    taus = out.temperature_index.cpu()
    samples = []
    for row in range(replies.shape[0]):
        ids = replies[row][keep[row]].tolist()
        tau = taus[row][keep[row]].tolist()
        samples.append({"reply_ids": ids, "temperature_index": tau, "text": _decode(model, ids)})
    n = config.num_replies
    return [samples[i * n : (i + 1) * n] for i in range(len(chunk))]


def _pair_record(model, record, replies, rewards, chosen, rejected, config, chunk_no) -> dict:
    c, r = replies[chosen], replies[rejected]
    return {
        "id": record["id"],
        "prompt": record.get("prompt") or _decode(model, _prompt_ids(model, record)),
        "prompt_ids": _prompt_ids(model, record),
        "chosen": c["text"],
        "rejected": r["text"],
        "chosen_ids": c["reply_ids"],
        "rejected_ids": r["reply_ids"],
        "chosen_tau": c["temperature_index"],
        "rejected_tau": r["temperature_index"],
        "chosen_reward": rewards[chosen],
        "rejected_reward": rewards[rejected],
        "rewards": rewards,
        "metadata": {
            "mode": model.graft_config.head.level,
            "temperatures": [float(t) for t in model.graft_config.head.temperatures],
            "num_replies": config.num_replies,
            "seed": config.seed,
            "chunk": chunk_no,
        },
    }


def _score(reward, model, todo: list[dict], replies: list[list[dict]]) -> list[list[float]]:
    prompts, texts, records = [], [], []
    for record, group in zip(todo, replies, strict=True):
        text = record.get("prompt") or _decode(model, _prompt_ids(model, record))
        for reply in group:
            prompts.append(text)
            texts.append(reply["text"])
            records.append({**record, **reply})
    flat = _checked_rewards(reward(prompts, texts, records), records)
    n = len(replies[0]) if replies else 0
    return [flat[i * n : (i + 1) * n] for i in range(len(todo))]


def _checked_rewards(values, records: list[dict]) -> list[float]:
    """One finite number per reply, or DataError naming the prompt: a NaN reward would make
    every comparison false and the pair meaningless."""
    values = list(values)
    if len(values) != len(records):
        raise DataError(f"the reward gave {len(values)} scores for {len(records)} replies; it "
                        "must return one number per reply")
    for value, record in zip(values, records, strict=True):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or isinstance(value, bool) or not math.isfinite(number):
            raise DataError(
                f"the reward gave {value!r} for a reply to prompt id {record.get('id')!r}; a "
                "reward must be a finite number: fix the reward function or model"
            )
    return [float(v) for v in values]


def _check_answers(records: list[dict], config: CollectConfig) -> None:
    """The exact_match reward needs every prompt's answer: fail before generating anything."""
    field_name = config.reward.answer_field
    if config.reward.kind != "exact_match":
        return
    missing = [r["id"] for r in records if field_name not in r]
    if missing:
        raise DataError(
            f"{len(missing)} prompt(s) (first: id {missing[0]!r}) have no {field_name!r} field, "
            "which reward.kind='exact_match' needs; add it or set reward.answer_field"
        )


def _write_prompt(model, record, group, scores, config, chunk_no, files: _OpenFiles) -> int:
    """Append the prompt's pair (returns 1) or record it as dropped (returns 0)."""
    pick = pairs.select_pair(scores, random.Random(f"{config.seed}:{record['id']}"))
    if pick is None:
        pairs.append_record(files.dropped, {"id": record["id"], "reward": scores[0]})
        return 0
    line = _pair_record(model, record, group, scores, *pick, config, chunk_no)
    pairs.append_record(files.pairs, line)
    return 1


def _producer(model, config: CollectConfig, reward) -> dict:
    """What determines the pairs: the model (base and head weights), grid, collection settings
    and the reward."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "force_resume"}
    name = None if reward is None else getattr(reward, "__qualname__", type(reward).__qualname__)
    return {
        "model": model_fingerprint(model),
        "temperatures": [float(t) for t in model.graft_config.head.temperatures],
        "collect": settings,
        "reward_function": name,
    }


def collect_pairs(
    model: AugmentedModel, prompts: str | Path | list, config: CollectConfig,
    out_path: str | Path, reward: Reward | None = None, progress: bool = True,
    force: bool | None = None,
) -> CollectStats:
    """Sample, score and pair replies for every prompt not yet in `out_path`; append the pairs.

    Args:
        model: the AugmentedModel; temperatures are drawn from its head at its level.
        prompts: a JSONL path or a list of records with 'prompt' (text) or 'prompt_ids', an
            optional 'id' (default: the position) and any fields the reward reads.
        config: replies per prompt, batching, reply length, seed, reward.
        out_path: the pairs JSONL (appended; prompts already there are skipped). Prompts whose
            rewards are all equal are listed in `<out_path>.dropped.jsonl`.
        reward: a batch scorer (`toolkit.lpo.rewards`) replacing the one `config.reward` names.
        progress: show a progress bar.
        force: resume a file another producer (model, grid, settings, reward) started
            (default: `config.force_resume`); the producer is kept in
            `<out_path>.producer.json` and the file is locked while written.

    Returns:
        The counts of this run (`CollectStats`).
    """
    start = time.perf_counter()
    records = _prompt_records(prompts)
    _check_prompt_ids(model, records)
    producer = _producer(model, config, reward)
    if reward is None:
        _check_answers(records, config)
        reward = build_reward(config.reward)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    force = config.force_resume if force is None else force
    with open(out_path, "ab") as pair_fh, exclusive(pair_fh, out_path, "data.pairs"):
        done = pairs.done_ids(out_path)
        provenance.check(out_path, producer, key="collect.force_resume", force=force)
        for path in (out_path, pairs.dropped_path(out_path)):
            pairs.repair_tail(path)
        stats = CollectStats(len(records), sum(r["id"] in done for r in records), 0, 0, 0, 0.0)
        with open(pairs.dropped_path(out_path), "ab") as drop_fh:
            _collect_chunks(model, records, done, config, reward, _OpenFiles(pair_fh, drop_fh),
                            stats, progress)
    stats.seconds = time.perf_counter() - start
    return stats


def _collect_chunks(model, records, done, config, reward, files: _OpenFiles, stats,
                    progress) -> None:
    size = config.prompts_per_batch
    bar = tqdm(total=len(records), initial=stats.skipped, disable=not progress,
               desc="collect", unit="prompt")
    with bar:
        for chunk_no in range(0, (len(records) + size - 1) // size):
            chunk = records[chunk_no * size : (chunk_no + 1) * size]
            wanted = [i for i, r in enumerate(chunk) if r["id"] not in done]
            if not wanted:
                continue
            sampled = _sample_chunk(model, chunk, config, chunk_no)
            todo, replies = [chunk[i] for i in wanted], [sampled[i] for i in wanted]
            stats.replies += len(sampled) * config.num_replies
            scores = _score(reward, model, todo, replies)
            for record, group, values in zip(todo, replies, scores, strict=True):
                written = _write_prompt(model, record, group, values, config, chunk_no, files)
                stats.pairs += written
                stats.dropped += 1 - written
                bar.update(1)


def _check_prompt_ids(model, records: list[dict]) -> None:
    vocab = model.vocab_size
    for record in records:
        bad = [i for i in record.get("prompt_ids") or [] if not 0 <= int(i) < vocab]
        if bad:
            raise DataError(
                f"prompt {record['id']!r}: token id {bad[0]} is outside the model's vocabulary "
                f"(0..{vocab - 1}); the prompt_ids were made for another tokenizer"
            )
