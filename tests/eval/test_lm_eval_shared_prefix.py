"""The lm-eval backend's shared prefix (model_arg shared_prefix, the default) gives HFLM's own
log-likelihoods and is-greedy flags (shared_prefix=False): on the tiny Llama, plain, SLED and
DoLa, for contexts shared by several continuations (1 to 5 tokens, one repeated, one the model's
own greedy reply), contexts with one continuation, batches that split a context's
continuations, and inputs cut on the left at max_length."""

import pytest
import torch

pytest.importorskip("lm_eval")

from toolkit.eval import harness  # noqa: E402
from toolkit.eval.harness_prefix import plan  # noqa: E402
from toolkit.graft.augmented import AugmentedModel  # noqa: E402
from toolkit.methods.options import GraftConfig, HeadConfig  # noqa: E402

METHODS = {"plain": {}, "sled": dict(sled=True, sled_evolution_scale=5),
           "dola": dict(dola=True)}


@pytest.fixture(scope="module")
def am(tiny_llama_dir):
    return AugmentedModel.graft(str(tiny_llama_dir), GraftConfig(head=HeadConfig(hidden_size=16)))


def _greedy(am, context, n):
    out = am.base.generate(torch.tensor([context]), do_sample=False, max_new_tokens=n,
                           min_new_tokens=n, pad_token_id=0)
    return out[0, len(context):].tolist()


def _requests(am):
    gen = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, 300, (n,), generator=gen).tolist()

    shared = [ids(11), ids(6)]
    requests = []
    for i, context in enumerate(shared):
        conts = [ids(1), ids(1), ids(3), ids(5), ids(2), _greedy(am, context, 3)]
        conts.append(conts[2])  # a repeated request
        requests += [((f"c{i}", f"k{j}"), context, cont) for j, cont in enumerate(conts)]
    requests += [(("alone", str(n)), ids(n), ids(4 - n % 3)) for n in (3, 9, 14)]
    requests += [(None, shared[0][:3], ids(2))]  # loglikelihood_rolling's requests have no key
    order = torch.randperm(len(requests), generator=gen).tolist()
    return [requests[i] for i in order]


def _run(am, requests, shared_prefix, **args):
    lm = harness.SurgeryLM(pretrained=am, device="cpu", shared_prefix=shared_prefix, **args)
    return lm._loglikelihood_tokens(requests, disable_tqdm=True)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("batch_size, max_length", [(4, None), (16, None), (3, 9)],
                         ids=["batch4", "batch16", "cut-at-9"])
def test_shared_prefix_equals_hflm(am, method, batch_size, max_length):
    requests = _requests(am)
    args = dict(METHODS[method], batch_size=batch_size)
    if max_length is not None:
        args["max_length"] = max_length
    old = _run(am, requests, False, **args)
    new = _run(am, requests, True, **args)
    assert [g for _, g in new] == [g for _, g in old]
    for (a, _), (b, _) in zip(new, old, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5)
    if method == "plain":
        assert any(g for _, g in old), "no greedy continuation: the flags test nothing"
    if max_length is not None:
        assert max(len(c) + len(t) for _, c, t in requests) > max_length + 1


def test_an_auto_batch_size_runs_the_whole_sequences(am, monkeypatch):
    lm = harness.SurgeryLM(pretrained=am, device="cpu", batch_size="auto")
    monkeypatch.setattr(harness.harness_prefix, "loglikelihoods",
                        lambda *a, **k: pytest.fail("shared prefix with batch_size=auto"))
    assert lm.shared_prefix
    lm._loglikelihood_tokens(_requests(am)[:2], disable_tqdm=True)


def test_plan_groups_shared_prefixes_and_batches_the_rest_whole():
    a, b = (1, 2, 3, 4), (1, 2, 3, 5, 6)
    alone, other = (7, 8, 9), (9, 9)
    spans = {a: 1, b: 2, alone: 2, other: 1}
    assert plan([a, b, alone, a, other], spans, batch_size=1) == [
        ((1, 2, 3), [b]), ((1, 2, 3), [a]), ((), [alone]), ((), [other])]
    assert plan([a, b, alone, other], spans, batch_size=8) == [
        ((1, 2, 3), [b, a]), ((), [alone, other])]
