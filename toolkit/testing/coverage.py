"""Coverage over transformers itself: graft and decode a tiny model of every causal-LM type.

For each decoder-only text type of the installed transformers (`architectures.decoder_only_types`)
`check(model_type)` builds a tiny random model and runs, in order: graft (with its probe check);
the tap invariant (every layer's tapped state is the model's own hidden state, layer L its
logits); parity with plain `generate()` with every feature off; SLED and DoLa generation; save
and reload (the reloaded model decodes SLED token for token the same). The first step that fails
gives the type's one-line reason. `table()` renders the docs page's table from the same results.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass

import torch

from toolkit.core.errors import ToolkitError
from toolkit.graft.augmented import AugmentedModel
from toolkit.graft.families import refusal
from toolkit.graft.tap import EarlyExitTap
from toolkit.methods.options import GraftConfig, HeadConfig
from toolkit.testing.architectures import CAUSAL_LM_TYPES, build_any_tiny, excluded

NEW_TOKENS = 3
PROMPT = torch.tensor([[0, 5, 17, 42, 99], [11, 23, 7, 64, 130]])
MASK = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])


@dataclass(frozen=True)
class Result:
    model_type: str
    status: str  # "pass" | "fail" | "excluded"
    reason: str = ""


def check(model_type: str) -> Result:
    """Run every step on a tiny `model_type`; the first failure is the result's reason."""
    reason = excluded(model_type)
    if reason:
        return Result(model_type, "excluded", reason)
    step = "build a tiny model"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = build_any_tiny(model_type)
            step = "graft"
            model = AugmentedModel(base, GraftConfig(head=HeadConfig(hidden_size=8)))
            for step, run in _STEPS:  # noqa: B007 - `step` names the failing step below
                run(model)
    except ToolkitError as err:
        return Result(model_type, "fail", f"{step}: {err}")
    except Exception as err:  # noqa: BLE001 - any failure of a foreign architecture is its reason
        text = " ".join(str(err).split())
        return Result(model_type, "fail", f"{step}: {type(err).__name__}: {text}"[:240])
    return Result(model_type, "pass")


def _invariant(model: AugmentedModel) -> None:
    """Each tapped layer's logits are lm_head of the model's own hidden state, layer L its logits.

    Most models list the embeddings then each layer's output in `hidden_states`; a few (Mamba,
    RWKV) list each layer's output only: either order is accepted.
    """
    num_layers = model.parts.num_layers
    tap = EarlyExitTap(model.base, layers=list(range(num_layers + 1)))
    with torch.no_grad(), tap.capture(last_only=False):
        out = model.base(input_ids=PROMPT[:1], output_hidden_states=True, use_cache=False)
        logits = tap.early_logits().float()
    states = out.hidden_states or ()
    if len(states) != num_layers + 1:
        raise AssertionError(f"the model returns {len(states)} hidden states, not {num_layers + 1}")
    tolerance = 1e-4 * max(1.0, out.logits.abs().max().item())
    diffs = []
    for shift in (0, 1):
        listed = [tap.project(states[max(layer - shift, 0)]) for layer in range(num_layers)]
        expected = torch.stack([*listed, out.logits], dim=-2).float()
        diffs.append((logits - expected)[..., shift:, :].abs().max().item())
    if not min(diffs) <= tolerance:
        raise AssertionError(f"tapped logits differ from the hidden states' by {min(diffs):.3g}")


def _parity(model: AugmentedModel) -> None:
    expected = model.base.generate(PROMPT, attention_mask=MASK, do_sample=False,
                                   max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    got = model.generate(PROMPT, MASK, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    if not torch.equal(got, expected):
        raise AssertionError(f"generate() gives {got[:, -NEW_TOKENS:].tolist()}, the base "
                             f"model {expected[:, -NEW_TOKENS:].tolist()}")


def _decode(model: AugmentedModel, **method) -> torch.Tensor:
    out = model.generate(PROMPT, MASK, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                         **method)
    if out.shape != (2, PROMPT.shape[1] + NEW_TOKENS):
        raise AssertionError(f"{method} generated shape {tuple(out.shape)}")
    return out


def _save_reload(model: AugmentedModel) -> None:
    expected = _decode(model, sled=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(f"{tmp}/ckpt", self_contained=True)
        loaded = AugmentedModel.from_pretrained(f"{tmp}/ckpt")
        got = _decode(loaded, sled=True)
    if not torch.equal(got, expected):
        raise AssertionError("the reloaded checkpoint decodes SLED differently")


_STEPS = (
    ("invariant", _invariant),
    ("parity", _parity),
    ("SLED", lambda model: _decode(model, sled=True)),
    ("DoLa", lambda model: _decode(model, dola=True)),
    ("save and reload", _save_reload),
)


def run(model_types=CAUSAL_LM_TYPES) -> list[Result]:
    """`check` every type (default: every causal-LM type of the installed transformers)."""
    return [check(t) for t in model_types]


def summary(results: list[Result]) -> str:
    """'N of M decoder-only text types pass (P%)'."""
    tried = [r for r in results if r.status != "excluded"]
    passed = sum(r.status == "pass" for r in tried)
    return (f"{passed} of {len(tried)} decoder-only text types pass "
            f"({100 * passed / max(1, len(tried)):.0f}%)")


def table(results: list[Result]) -> str:
    """A Markdown table: type, status, reason (pass first, then fail, then excluded)."""
    order = {"pass": 0, "fail": 1, "excluded": 2}
    rows = ["| type | status | reason |", "| --- | --- | --- |"]
    for r in sorted(results, key=lambda r: (order[r.status], r.model_type)):
        reason = (refusal(r.model_type) or r.reason).replace("|", "\\|")
        rows.append(f"| `{r.model_type}` | {r.status} | {reason} |")
    return "\n".join(rows)
