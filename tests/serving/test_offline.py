"""`vllm.LLM(model=checkpoint)` offline, as docs/serving.md says: the same plugin and processors
as the server, per-request options in `SamplingParams.extra_args`, greedy tokens equal to
AugmentedModel.generate's. The engine runs in a child process (vLLM starts its own workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("vllm", reason="serving needs vLLM: python3 -m toolkit.serving.install")

from toolkit.testing.serving import GREEDY, PROMPTS  # noqa: E402

SCRIPT = """
import json, sys
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt
ckpt, prompts, cases = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
llm = LLM(model=ckpt, dtype="float32", gpu_memory_utilization=0.05, max_model_len=256, seed=0)
out = {}
for name, xargs in cases.items():
    params = SamplingParams(temperature=0, max_tokens=12, extra_args=xargs)
    done = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                        use_tqdm=False)
    out[name] = [list(d.outputs[0].token_ids) for d in done]
print("TOKENS " + json.dumps(out))
"""


def test_offline_llm_decodes_like_augmented_model_generate(serving_checkpoint):
    from toolkit import AugmentedModel

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cases = {name: xargs for name, (xargs, _) in GREEDY.items()}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(serving_checkpoint),
                           json.dumps(PROMPTS), json.dumps(cases)],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("TOKENS ")]
    served = json.loads(line.removeprefix("TOKENS "))
    am = AugmentedModel.from_pretrained(serving_checkpoint)
    for name, (_, kwargs) in GREEDY.items():
        for prompt, tokens in zip(PROMPTS, served[name], strict=True):
            out = am.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                              adaptive_temperature=False, top_n_sigma=False, **kwargs)
            assert tokens == out[0, len(prompt):].tolist(), (name, prompt)
    assert served["sled"] != served["plain"] and served["dola"] != served["plain"]
