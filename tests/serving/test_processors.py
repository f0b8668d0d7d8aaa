"""The vLLM logits processors on hand-made batches: which rows they touch, and when the head
chooses (no engine started)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("vllm", reason="serving needs vLLM: python3 -m toolkit.serving.install")

from vllm import SamplingParams  # noqa: E402
from vllm.v1.sample.logits_processor import BatchUpdate  # noqa: E402

from toolkit.graft.head import AdaptiveDecoderHead  # noqa: E402
from toolkit.methods.options import (  # noqa: E402
    AdaptiveOptions,
    DecodingConfig,
    GraftConfig,
    HeadConfig,
)
from toolkit.serving import state  # noqa: E402
from toolkit.serving.processors import LogitsStage, SamplingStage  # noqa: E402

GRID = [0.5, 2.0]


def _stage(tmp_path, level: str) -> SamplingStage:
    """A SamplingStage over a served checkpoint whose head picks 2.0 when h[0] > 0, else 0.5."""
    graft = GraftConfig(head=HeadConfig(hidden_size=4, temperatures=GRID, level=level))
    decoding = DecodingConfig(adaptive_temperature=AdaptiveOptions(enabled=True))
    state.remember(state.Served(directory=tmp_path.resolve(), base_path="", graft=graft,
                                decoding=decoding, vocab_size=6, num_layers=2, tied=False,
                                layers=(0, 1)))
    head = AdaptiveDecoderHead(3, graft.head)
    with torch.no_grad():
        head.mlp[0].weight.zero_()
        head.mlp[0].weight[0, 0] = 1.0
        head.mlp[0].bias.zero_()
        head.mlp[2].weight.zero_()
        head.mlp[2].weight[0, 0] = 1.0
        head.mlp[2].bias.zero_()
        head.mlp[4].weight.copy_(torch.tensor([[0.0, 0, 0, 0], [50.0, 0, 0, 0]]))
    model = SimpleNamespace(surgery_head=head, surgery=state.served(tmp_path))
    config = SimpleNamespace(model_config=SimpleNamespace(model=str(tmp_path)))
    stage = SamplingStage(config, torch.device("cpu"), False)
    stage.test_model = model
    return stage


def _publish(stage: SamplingStage, first: float) -> None:
    final = torch.tensor([[first, 0.0, 0.0], [1.0, 0.0, 0.0]])
    state.publish(state.StepStates(final=final, early=None, model=stage.test_model))


@pytest.mark.parametrize("level, second_step", [("sequence", 2.0), ("token", 0.5)])
def test_the_head_chooses_once_per_reply_or_at_every_token(tmp_path, level, second_step):
    stage = _stage(tmp_path, level)
    outputs: list[int] = []
    sampled, greedy = SamplingParams(temperature=1.0), SamplingParams(temperature=0.0)
    stage.update_state(BatchUpdate(batch_size=2, removed=[], moved=[],
                                   added=[(0, sampled, [1, 2], outputs),
                                          (1, greedy, [1, 2], [])]))
    logits = torch.tensor([[2.0, 1.0, 0, 0, 0, -1.0]] * 2)
    _publish(stage, first=1.0)  # the last prompt token: the head picks 2.0
    out = stage.apply(logits.clone())
    assert torch.equal(out[0], logits[0] / 2.0)
    assert torch.equal(out[1], logits[1])  # a greedy request: untouched
    outputs.append(7)  # the first token is out; the next state would pick 0.5
    _publish(stage, first=-1.0)
    assert torch.equal(stage.apply(logits.clone())[0], logits[0] / second_step)


def test_requests_leaving_the_batch_leave_the_processors(tmp_path):
    stage = _stage(tmp_path, "sequence")
    stage.update_state(BatchUpdate(batch_size=1, removed=[], moved=[],
                                   added=[(0, SamplingParams(), [1], [])]))
    assert list(stage.rows) == [0]
    stage.update_state(BatchUpdate(batch_size=0, removed=[0], moved=[], added=[]))
    assert stage.rows == {}
    plain = SimpleNamespace(model_config=SimpleNamespace(model=str(tmp_path / "elsewhere")))
    logits_stage = LogitsStage(plain, torch.device("cpu"), False)
    logits_stage.update_state(BatchUpdate(batch_size=1, removed=[], moved=[],
                                          added=[(0, SamplingParams(), [1], [])]))
    assert logits_stage.rows == {}  # another model, no logits-stage method asked for
