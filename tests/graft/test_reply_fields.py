"""What each generated reply records beside its text: token counts, the adaptive head's
temperature, and (asked for) each token's log-probability, checked by hand."""

from __future__ import annotations

import json

import pytest
import torch

from toolkit.cli.main import main
from toolkit.graft.augmented import AugmentedModel
from toolkit.graft.batching import STOP, generate_replies
from toolkit.methods.options import DecodingConfig, GraftConfig, HeadConfig, with_overrides

PROMPTS = ["Hello there", "The cat sat on the", "1 2 3"]


def _model(tiny_llama_dir, level="sequence"):
    torch.manual_seed(0)
    return AugmentedModel.graft(str(tiny_llama_dir),
                                GraftConfig(head=HeadConfig(hidden_size=16, level=level)))


def test_greedy_logprobs_and_token_counts_by_hand(tiny_llama_dir):
    am = _model(tiny_llama_dir)
    texts = am.render_prompts(PROMPTS, "off")
    replies = generate_replies(am, texts, DecodingConfig(max_new_tokens=5), 2, logprobs=True)
    for text, reply in zip(texts, replies, strict=True):
        prompt = am.tokenizer(text)["input_ids"]
        assert reply.prompt_tokens == len(prompt)
        assert reply.completion_tokens == len(reply.ids) + (reply.finish_reason == STOP)
        assert reply.temperature is None  # no head
        with torch.no_grad():
            logits = am.base(torch.tensor([prompt + reply.ids])).logits[0].float()
        steps = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
        expected = steps[torch.arange(len(reply.ids)), torch.tensor(reply.ids)]
        assert reply.logprobs == pytest.approx(expected.tolist(), abs=1e-4)
        assert all(v <= 0 for v in reply.logprobs)


def test_sampled_logprobs_follow_the_temperature(tiny_llama_dir):
    """At T = 0.5 the drawn distribution is softmax(logits / 0.5): its log-probabilities, not
    the raw model's."""
    am = _model(tiny_llama_dir)
    text = am.render_prompts(["Once upon a time"], "off")
    decoding = DecodingConfig(max_new_tokens=4, do_sample=True, temperature=0.5, top_k=0,
                              top_p=1.0, seed=3)
    [reply] = generate_replies(am, text, decoding, 1, logprobs=True)
    prompt = am.tokenizer(text[0])["input_ids"]
    with torch.no_grad():
        logits = am.base(torch.tensor([prompt + reply.ids])).logits[0].float()
    steps = torch.log_softmax(logits[len(prompt) - 1 : -1] / 0.5, dim=-1)
    expected = steps[torch.arange(len(reply.ids)), torch.tensor(reply.ids)]
    assert reply.logprobs == pytest.approx(expected.tolist(), abs=1e-4)


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_the_heads_temperature_is_the_one_generate_used(tiny_llama_dir, level):
    am = _model(tiny_llama_dir, level)
    decoding = with_overrides(DecodingConfig(max_new_tokens=4, do_sample=True, seed=1),
                              adaptive_temperature=dict(enabled=True))
    texts = am.render_prompts(PROMPTS, "off")
    replies = generate_replies(am, texts, decoding, 3)
    enc = am.encode(texts, chat_template="off")
    out = am.generate(**enc, decoding=decoding, return_records=True)
    for i, reply in enumerate(replies):
        used = out.temperature[i].tolist()
        if level == "sequence":
            assert reply.temperature == pytest.approx(used[0])
        else:
            assert reply.temperature == pytest.approx(used[: len(reply.ids)])
        assert reply.logprobs is None and "logprobs" not in reply.fields()


def test_the_cli_writes_the_fields(tiny_llama_dir, tmp_path, capsys):
    ckpt = _model(tiny_llama_dir).save_pretrained(tmp_path / "ckpt")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"run_name: t\noutput_dir: {tmp_path}/out\nwork_dir: {tmp_path}/work\n"
                      f"model:\n  path: {ckpt}\ndecoding:\n  max_new_tokens: 4\n")
    out = tmp_path / "gen.jsonl"
    code = main(["generate", str(recipe), "generate.prompts=[Hello there, The cat]",
                 f"generate.output={out}", "generate.logprobs=true"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [set(r) for r in rows] == [{"prompt", "completion", "finish_reason", "empty",
                                       "prompt_tokens", "completion_tokens", "temperature",
                                       "logprobs"}] * 2
    assert all(len(r["logprobs"]) == r["completion_tokens"] - (r["finish_reason"] == "stop")
               for r in rows)
