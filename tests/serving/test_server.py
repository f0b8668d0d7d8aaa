"""The OpenAI server of vLLM on an augmented checkpoint: our methods per request, equal to
AugmentedModel.generate, per-request options, errors as HTTP 400, no cross-talk."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("vllm", reason="serving needs vLLM: python3 -m toolkit.serving.install")

from toolkit.decoding import top_n_sigma  # noqa: E402
from toolkit.serving.server import post, running  # noqa: E402
from toolkit.testing.serving import GREEDY, PROMPTS, SERVER_ARGS  # noqa: E402


@pytest.fixture(scope="module")
def server(serving_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "vllm.log"
    with running(serving_checkpoint, extra=SERVER_ARGS, log=log) as url:
        yield url


@pytest.fixture(scope="module")
def am(serving_checkpoint):
    from toolkit import AugmentedModel

    return AugmentedModel.from_pretrained(serving_checkpoint)


def complete(url: str, prompt: list[int], **body) -> list[int]:
    status, answer = post(url, "/v1/completions", {"prompt": prompt, "return_token_ids": True,
                                                   **body})
    assert status == 200, answer
    return answer["choices"][0]["token_ids"]


def reference(am, prompt: list[int], **kwargs) -> list[int]:
    out = am.generate(torch.tensor([prompt]), max_new_tokens=12, **kwargs)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("method", list(GREEDY))
def test_greedy_tokens_equal_augmented_model_generate(server, am, method):
    xargs, kwargs = GREEDY[method]
    for prompt in PROMPTS:
        served = complete(server, prompt, max_tokens=12, temperature=0, vllm_xargs=xargs)
        assert served == reference(am, prompt, do_sample=False, adaptive_temperature=False,
                                   top_n_sigma=False, **kwargs), (method, prompt)


def test_methods_change_the_tokens(server):
    """The parity above means something: SLED and DoLa replies differ from plain ones."""
    replies = {m: [complete(server, p, max_tokens=12, temperature=0, vllm_xargs=GREEDY[m][0])
                   for p in PROMPTS] for m in GREEDY}
    assert replies["sled"] != replies["plain"] and replies["dola"] != replies["plain"]


def test_saved_decoding_and_the_head_apply_by_default(server, am):
    """No xargs and no sampling settings: the checkpoint's SLED + top-n-sigma + head, sampling;
    the head picks temperature 0, so the reply is deterministic. Switching the head off samples
    at temperature 1. (The completions endpoint keeps OpenAI's default of 16 tokens.)"""
    for prompt in PROMPTS:
        assert complete(server, prompt, max_tokens=12, seed=3) == reference(am, prompt, seed=3)
    sampled = [complete(server, p, max_tokens=12, seed=3,
                        vllm_xargs={"adaptive_temperature": "false"}) for p in PROMPTS]
    assert sampled != [reference(am, p, seed=3) for p in PROMPTS]


def test_saved_sampling_settings_are_the_servers_defaults(serving_checkpoint):
    """What vLLM gives requests that leave a setting unset: the checkpoint's, else the base's
    generation_config, else transformers' (as AugmentedModel.generate resolves them)."""
    from vllm.plugins import load_general_plugins
    from vllm.transformers_utils.config import try_get_generation_config

    load_general_plugins()
    defaults = try_get_generation_config(str(serving_checkpoint), False).to_diff_dict()
    assert defaults["max_new_tokens"] == 12 and defaults["do_sample"] is True
    assert defaults["temperature"] == 1.0 and defaults["top_k"] == 50
    assert defaults["eos_token_id"] == 2


def test_top_n_sigma_keeps_every_sampled_token_in_its_set(server, am):
    """At temperature 2 (vLLM's largest), every sampled token lies in the top-n-sigma set of the
    base model's logits at its step (the set does not depend on temperature); without the
    filter some do not."""
    def outside(xargs: dict) -> int:
        count = 0
        for seed, prompt in enumerate(PROMPTS * 3):
            reply = complete(server, prompt, max_tokens=16, temperature=2.0, seed=seed,
                             vllm_xargs={"sled": "false", "adaptive_temperature": "false",
                                         **xargs})
            ids = torch.tensor([prompt + reply])
            with torch.no_grad():
                logits = am.base(ids).logits[0, len(prompt) - 1: -1]
            kept = top_n_sigma(logits, 1.0)
            picked = logits.gather(-1, torch.tensor(reply)[:, None])[:, 0]
            threshold = kept.masked_fill(kept.isinf(), float("inf")).amin(-1)
            count += int((picked < threshold - 1e-4).sum())
        return count

    assert outside({"top_n_sigma": 1.0}) == 0
    assert outside({"top_n_sigma": "false"}) > 0


@pytest.mark.parametrize("xargs, message", [
    ({"sled": "true", "sled_evolution_scale": 100000}, "larger than the vocabulary"),
    ({"sledd": "true"}, "did you mean 'sled'"),
    ({"top_n_sigma": "lots"}, "top_n_sigma='lots' is not allowed"),
    ({"dola": "true", "dola_layers": [9]}, "layer indices must be integers in 0..4"),
])
def test_a_bad_request_is_400_and_the_server_goes_on(server, xargs, message):
    status, answer = post(server, "/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 2,
                                                      "vllm_xargs": xargs})
    assert status == 400 and message in answer["error"]["message"], answer
    assert len(complete(server, PROMPTS[0], max_tokens=2, temperature=0)) == 2


def test_concurrent_requests_keep_their_own_methods(server, am):
    jobs = [(m, p) for m in GREEDY for p in PROMPTS] * 2
    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(lambda job: complete(server, job[1], max_tokens=12,
                                                     temperature=0,
                                                     vllm_xargs=GREEDY[job[0]][0]), jobs))
    for (method, prompt), reply in zip(jobs, replies, strict=True):
        kwargs = GREEDY[method][1]
        assert reply == reference(am, prompt, do_sample=False, adaptive_temperature=False,
                                  top_n_sigma=False, **kwargs), (method, prompt)


def test_a_model_without_auxiliary_states_runs_its_tap_through_hooks_in_eager_mode(
        tmp_path_factory):
    """Gemma 3 has no auxiliary hidden-state outputs in vLLM: eager mode reads the tap through
    hooks (tied embeddings, early layers through the final norm: Gemma 3's default) and equals
    AugmentedModel.generate; compiled mode refuses to start with one line saying so."""
    from toolkit import AugmentedModel
    from toolkit.testing.serving import save_serving_checkpoint

    root = tmp_path_factory.mktemp("gemma3")
    ckpt = save_serving_checkpoint(root, family="gemma3_text")
    am = AugmentedModel.from_pretrained(ckpt)
    assert am.graft_config.early_exit_norm is True
    with running(ckpt, extra=[*SERVER_ARGS, "--enforce-eager"], log=root / "eager.log") as url:
        for method in GREEDY:
            xargs, kwargs = GREEDY[method]
            for prompt in PROMPTS:
                assert complete(url, prompt, max_tokens=12, temperature=0, vllm_xargs=xargs) \
                    == reference(am, prompt, do_sample=False, adaptive_temperature=False,
                                 top_n_sigma=False, **kwargs), (method, prompt)
    with (pytest.raises(RuntimeError, match="exited with code 1 before it served"),
          running(ckpt, extra=SERVER_ARGS, log=root / "compiled.log")):
        pass
    assert ("ValueError: Gemma3ForCausalLM has no auxiliary hidden-state outputs in this vLLM, "
            "so the model-surgery tap needs eager mode: start vLLM with --enforce-eager"
            ) in (root / "compiled.log").read_text()
