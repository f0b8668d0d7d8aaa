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


def test_the_serving_pages_commands_and_snippets_run(smollm2, tmp_path):
    """docs/serving.md as written, in a folder holding checkpoints/quickstart: its server line
    starts the server (on a free port instead of 8000), then its curl command and its Python
    client snippet get replies."""
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from toolkit.serving.server import command, free_port, started

    page = (Path(__file__).parents[2] / "docs" / "serving.md").read_text()
    am, ckpt = smollm2
    shutil.copytree(ckpt, tmp_path / "checkpoints" / "quickstart")
    line = re.search(r"^python3 -m (vllm\S+) --model (\S+)$", page, re.M)
    assert [sys.executable, "-m", line.group(1), "--model", line.group(2)] == \
        command(line.group(2))[:5]
    port = free_port()
    served = command(line.group(2), port=port, extra=ARGS)
    curl = re.search(r"^curl .*$", re.sub(r"\\\n\s*", "", page), re.M).group(0)
    snippets = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(snippets) == 1
    with started(served, f"http://127.0.0.1:{port}", cwd=tmp_path,
                 log=tmp_path / "vllm.log"):
        done = subprocess.run(["bash", "-c", curl.replace(":8000", f":{port}")],
                              capture_output=True, text=True, check=True)
        assert "Paris" in done.stdout, done.stdout
        done = subprocess.run([sys.executable, "-c", snippets[0].replace(":8000", f":{port}")],
                              capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]
