"""The real SmolLM2-135M-Instruct served by vLLM from a checkpoint that refers to its preset:
greedy tokens equal AugmentedModel.generate's, plain and with SLED, and the chat endpoint
takes vllm_xargs."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm", reason="serving needs vLLM: python3 -m toolkit.serving.install")

from toolkit.serving.server import post, running  # noqa: E402

pytestmark = pytest.mark.real
ARGS = ["--dtype", "float32", "--gpu-memory-utilization", "0.1", "--max-model-len", "512",
        "--enforce-eager"]


@pytest.fixture(scope="module")
def smollm2(real_model_dir, tmp_path_factory):
    from toolkit import AugmentedModel

    am = AugmentedModel.graft(real_model_dir)
    ckpt = am.save_pretrained(tmp_path_factory.mktemp("real") / "ckpt")
    assert am.base_reference and "smollm2" in str(am.base_reference)
    return am, ckpt


def test_greedy_tokens_equal_augmented_model_generate_on_smollm2(smollm2, tmp_path):
    am, ckpt = smollm2
    prompts = [am.encode("What is the capital of France?").input_ids[0].tolist(),
               am.encode("Name a large ocean.").input_ids[0].tolist()]
    cases = {"plain": ({}, {}), "sled": ({"sled": "true"}, {"sled": True})}
    with running(ckpt, extra=ARGS, log=tmp_path / "vllm.log") as url:
        for name, (xargs, kwargs) in cases.items():
            for prompt in prompts:
                status, answer = post(url, "/v1/completions", {
                    "prompt": prompt, "max_tokens": 16, "temperature": 0,
                    "return_token_ids": True, "vllm_xargs": xargs})
                assert status == 200, answer
                expected = am.generate(torch.tensor([prompt]), do_sample=False,
                                       max_new_tokens=16, **kwargs)[0, len(prompt):].tolist()
                assert answer["choices"][0]["token_ids"] == expected, (name, prompt)
        status, answer = post(url, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 8, "temperature": 0, "vllm_xargs": {"sled": "true"}})
        assert status == 200 and "Paris" in answer["choices"][0]["message"]["content"], answer
