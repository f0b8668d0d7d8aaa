"""A synthetic LPO task where the right temperature is known (the quickstart's training task).

Prompts are random token ids ending in a marker token that names their kind:
- "exact" prompts are rewarded for reproducing the prompt's greedy reply (the fraction of
  reply positions equal to it), so temperature 0 is best;
- "diverse" prompts are rewarded for unpredictable tokens: 1 - exp(-mean surprisal) of the
  reply under the frozen model, which grows with the temperature, so a high temperature is
  best. (The tiny model's greedy replies already repeat few tokens, so a distinct-token ratio
  saturates near 1 for every temperature above 0.4 and cannot tell 0.4 from 1.0.)
The flow (collect -> feature cache -> train -> evaluate) is the one LPO pipeline,
`toolkit.lpo.pipeline` (`run_synthetic`, or `python cli.py run recipes/quickstart.yaml`).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import torch

from toolkit.lpo.text_eval import mean_by_kind, tune_edt
from toolkit.methods.options import GraftConfig, HeadConfig, pinned

KINDS = ("exact", "diverse")
FIRST_BODY_TOKEN = 3  # after the special tokens <pad>, <s>, </s>


def _stack(prompts: list[dict]) -> torch.Tensor:
    lengths = {len(p["prompt_ids"]) for p in prompts}
    if len(lengths) != 1:
        raise ValueError("synthetic prompts must all have the same length")
    return torch.tensor([p["prompt_ids"] for p in prompts])


def _replies(output, prompt_length: int) -> list[list[int]]:
    replies = output.sequences[:, prompt_length:].cpu()
    mask = output.reply_mask.cpu()
    return [replies[i][mask[i]].tolist() for i in range(replies.shape[0])]


@torch.no_grad()
def pick_markers(model, prompt_length: int = 6, samples: int = 16, seed: int = 0) -> dict:
    """The two marker tokens whose last-position hidden states are easiest to tell apart.

    A random model mixes the context into the last hidden state, so most token pairs are
    hard to separate there; this picks the pair with the largest squared distance between
    mean states over the sum of their spreads, on `samples` random bodies.
    """
    vocab = model.vocab_size
    gen = torch.Generator().manual_seed(seed)
    body = torch.randint(FIRST_BODY_TOKEN, vocab, (samples, prompt_length - 1), generator=gen)
    candidates = torch.arange(FIRST_BODY_TOKEN, vocab)
    ids = torch.cat([body.repeat(len(candidates), 1),
                     candidates.repeat_interleave(samples)[:, None]], dim=1)
    hidden = model.head_features(ids)[:, -1].float().cpu()
    hidden = hidden.reshape(len(candidates), samples, -1)
    mean, spread = hidden.mean(1), hidden.var(1).sum(-1)
    score = torch.cdist(mean, mean) ** 2 / (spread[:, None] + spread[None, :])
    score.fill_diagonal_(0.0)
    best = int(score.argmax())
    return {"exact": int(candidates[best // len(candidates)]),
            "diverse": int(candidates[best % len(candidates)])}


def make_prompts(model, n: int, seed: int, markers: dict, prompt_length: int = 6,
                 max_new_tokens: int = 12) -> list[dict]:
    """n prompts, kinds alternating, each with its greedy reply (computed once, here)."""
    gen = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([t for t in range(FIRST_BODY_TOKEN, model.vocab_size)
                            if t not in markers.values()])
    body = allowed[torch.randint(len(allowed), (n, prompt_length - 1), generator=gen)]
    kinds = [KINDS[i % 2] for i in range(n)]
    ids = torch.cat([body, torch.tensor([[markers[k]] for k in kinds])], dim=1)
    greedy = model.generate(ids, decoding=pinned(model.decoding), max_new_tokens=max_new_tokens,
                            return_records=True)
    return [
        {"id": f"s{seed}-{i}", "prompt_ids": ids[i].tolist(), "kind": kinds[i],
         "greedy_ids": reply, "max_new_tokens": max_new_tokens}
        for i, reply in enumerate(_replies(greedy, prompt_length))
    ]


def match_fraction(reply_ids: list[int], greedy_ids: list[int]) -> float:
    """Fraction of the greedy reply's positions that the reply reproduces."""
    return sum(a == b for a, b in zip(reply_ids, greedy_ids, strict=False)) / max(len(greedy_ids), 1)


class SyntheticReward:
    """The task's batch reward (see `toolkit.lpo.rewards`): exact prompts score
    `match_fraction`; diverse prompts score 1 - exp(-mean surprisal) of the reply under the
    frozen model at temperature 1 (in [0, 1), higher for less predictable tokens)."""

    def __init__(self, model):
        self.model = model

    @torch.no_grad()
    def surprisal(self, records: list[dict]) -> list[float]:
        rows = [list(r["prompt_ids"]) + list(r["reply_ids"]) for r in records]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        logits = self.model.base(input_ids=ids.to(self.model.base.device)).logits.float().cpu()
        logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        out = []
        for i, record in enumerate(records):
            start, n = len(record["prompt_ids"]) - 1, len(record["reply_ids"])
            out.append(-logp[i, start : start + n].mean().item() if n else 0.0)
        return out

    def __call__(self, prompts, replies, records) -> list[float]:
        scores = [0.0] * len(records)
        diverse = [i for i, r in enumerate(records) if r["kind"] == "diverse"]
        if diverse:
            nll = self.surprisal([records[i] for i in diverse])
            for i, value in zip(diverse, nll, strict=True):
                scores[i] = 1.0 - math.exp(-value)
        for i, record in enumerate(records):
            if record["kind"] == "exact":
                scores[i] = match_fraction(record["reply_ids"], record["greedy_ids"])
        return scores


def _mean_rewards(scorer, prompts: list[dict], replies: list[list[int]]) -> dict[str, float]:
    records = [{**p, "reply_ids": ids} for p, ids in zip(prompts, replies, strict=True)]
    return mean_by_kind(scorer(None, None, records), prompts, KINDS)


def _edt_replies(model, ids: torch.Tensor, edt: dict, n_new: int, seed: int) -> list[list[int]]:
    out = model.generate(ids, decoding=pinned(model.decoding), do_sample=True,
                         edt={"t0": edt["t0"], "theta": edt["theta"]}, max_new_tokens=n_new,
                         seed=seed, return_records=True)
    return _replies(out, ids.shape[1])


@torch.no_grad()
def tune_synthetic_edt(model, prompts: list[dict], seed: int = 0) -> dict:
    """EDT's t0 and theta tuned on `prompts` (the training prompts): `text_eval.tune_edt` with
    the mean reward over both kinds."""
    ids = _stack(prompts)
    scorer = SyntheticReward(model)

    def score(edt: dict) -> float:
        replies = _edt_replies(model, ids, edt, prompts[0]["max_new_tokens"], seed)
        return _mean_rewards(scorer, prompts, replies)["all"]

    return tune_edt(score, f"{len(prompts)} training prompts")


@torch.no_grad()
def evaluate_head(model, prompts: list[dict], seed: int = 0, edt: dict | None = None) -> dict:
    """Per-kind argmax temperatures of the head, and mean rewards of the head's replies vs
    replies at every fixed grid temperature (same prompts, same seed), and vs EDT at `edt`'s
    settings (`tune_synthetic_edt` on the training prompts) when given: the row "edt"."""
    ids = _stack(prompts)
    grid = [float(t) for t in model.head.temperatures.tolist()]
    hidden = model.head_features(ids)[:, -1]
    chosen = [grid[i] for i in model.head.choose(hidden).tolist()]
    choices = {k: Counter(t for t, p in zip(chosen, prompts, strict=True) if p["kind"] == k) for k in KINDS}
    n_new = prompts[0]["max_new_tokens"]
    plain = pinned(model.decoding)
    head_out = model.generate(ids, decoding=plain, do_sample=True, max_new_tokens=n_new, seed=seed,
                              adaptive_temperature={"enabled": True, "choice": "argmax"},
                              return_records=True)
    scorer = SyntheticReward(model)
    rewards = {"head": _mean_rewards(scorer, prompts, _replies(head_out, ids.shape[1]))}
    for tau in grid:
        out = model.generate(ids, decoding=plain, do_sample=tau > 0, temperature=tau if tau > 0 else 1.0,
                             max_new_tokens=n_new, seed=seed, return_records=True)
        rewards[f"{tau:g}"] = _mean_rewards(scorer, prompts, _replies(out, ids.shape[1]))
    if edt is not None:
        rewards["edt"] = _mean_rewards(scorer, prompts, _edt_replies(model, ids, edt, n_new, seed))
    counts = {k: sum(c.values()) for k, c in choices.items()}
    return {"edt": edt, 
        "choices": {k: {f"{t:g}": n for t, n in sorted(c.items())} for k, c in choices.items()},
        "exact_at_zero": choices["exact"][0.0] / max(counts["exact"], 1),
        "diverse_at_high": sum(n for t, n in choices["diverse"].items() if t >= 0.8)
        / max(counts["diverse"], 1),
        "rewards": rewards,
    }


def build_task_model(base_dir, level: str = "sequence", head_hidden: int = 64, seed: int = 0):
    """The tiny random Llama of `toolkit.testing`, saved to `base_dir`, with a fresh small head."""
    from toolkit.graft.augmented import AugmentedModel
    from toolkit.testing import save_tiny

    base_dir = Path(base_dir)
    if not (base_dir / "config.json").exists():
        save_tiny(base_dir, "llama", seed)
    config = GraftConfig(head=HeadConfig(hidden_size=head_hidden, level=level))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AugmentedModel.graft(base_dir, config)
