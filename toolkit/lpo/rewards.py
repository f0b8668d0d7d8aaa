"""Rewards that score sampled replies (docs/methods.md section 6): exact match, repetition, reward model, function.

A reward is a callable `score(prompts, replies, records) -> list[float]` over a batch: the
prompt texts, the reply texts and one record per reply (the prompt's input record plus
`reply_ids` and `temperature_index`).
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable

import torch

from toolkit.core.answers import exact_match
from toolkit.core.errors import CheckpointError, ConfigError, DataError
from toolkit.lpo.config import RewardConfig

Reward = Callable[[list, list, list], list]

def repeated_ngrams(tokens, n: int = 3) -> int:
    """How many n-grams of the sequence are repeats of an earlier one."""
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return sum(count - 1 for count in grams.values())


def load_function(spec: str) -> Callable:
    """Import a user function given as 'module:function'."""
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"reward.function={spec!r}: cannot import {module_name!r} ({exc})") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"reward.function={spec!r}: {module_name!r} has no function {name!r}")
    return fn


def _exact_match_reward(field_name: str) -> Reward:
    def score(prompts, replies, records):
        scores = []
        for reply, record in zip(replies, records, strict=True):
            if field_name not in record:
                raise DataError(
                    f"prompt {record.get('id')!r} has no {field_name!r} field, which the "
                    "exact_match reward needs; add it or change reward.answer_field"
                )
            scores.append(exact_match(reply, record[field_name]))
        return scores

    return score


def _repetition_reward(n: int) -> Reward:
    def score(prompts, replies, records):
        return [-float(repeated_ngrams(list(r["reply_ids"]), n)) for r in records]

    return score


def _function_reward(spec: str) -> Reward:
    fn = load_function(spec)

    def score(prompts, replies, records):
        return [fn(p, y, r) for p, y, r in zip(prompts, replies, records, strict=True)]

    return score


def _reward_model(path: str, batch_size: int = 16) -> Reward:
    from transformers import AutoModelForSequenceClassification

    from toolkit.sources.quiet import quiet_loading
    from toolkit.sources.tokenizer_files import load_tokenizer

    try:
        tokenizer = load_tokenizer(path)
        with quiet_loading():  # never a pickle (pytorch_model.bin) file
            model = AutoModelForSequenceClassification.from_pretrained(
                path, use_safetensors=True).eval()
    except (OSError, CheckpointError) as exc:  # CheckpointError: the tokenizer's files
        raise ConfigError(
            f"reward.model_path={path!r} is not a local sequence-classification model ({exc})"
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id

    @torch.no_grad()
    def score(prompts, replies, records):
        out = []
        for i in range(0, len(replies), batch_size):
            pairs = zip(prompts[i : i + batch_size], replies[i : i + batch_size], strict=True)
            texts = [p + y for p, y in pairs]
            enc = tokenizer(texts, return_tensors="pt", padding=True)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            out.extend(model(**enc).logits[:, 0].float().tolist())
        return out

    return score


def build_reward(config: RewardConfig) -> Reward:
    """The batch scorer the config names."""
    if config.kind == "exact_match":
        return _exact_match_reward(config.answer_field)
    if config.kind == "repetition":
        return _repetition_reward(config.ngram)
    if config.kind == "function":
        return _function_reward(config.function)
    return _reward_model(config.model_path)
