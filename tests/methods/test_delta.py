"""DeLTa: golden values by hand, a least-squares second opinion on random logits with -inf, ties
and extremes, rows alone equal to the batch, generation equal to a cache-free reference, scoring
and lm-eval log-probabilities, and the registry wiring."""

from __future__ import annotations

import math

import pytest
import torch
from _generation import early_logits, graft, prompt_batch, reference_generate
from _hypothesis import DECODING, layer_logits, rows_alone
from hypothesis import given
from hypothesis import strategies as st

from toolkit import methods
from toolkit.core.errors import ConfigError
from toolkit.decoding import delta_extrapolate, delta_logits, trajectory_weights
from toolkit.eval.scoring import encode_pair, score_pairs
from toolkit.methods.options import DecodingConfig, DeltaOptions, apply_preset, with_overrides

INF = float("inf")


def test_golden_by_hand():
    # One early layer e and the final z at x = -1, 0: the line read at x = 1 is 2z - e.
    final, early = torch.tensor([[3.0, 1.0]]), torch.tensor([[[1.0, 2.0]]])
    torch.testing.assert_close(delta_extrapolate(final, early), torch.tensor([[5.0, 0.0]]))
    # Two early layers: points (-2, 0), (-1, 1), (0, 3); slope 1.5, mean 4/3 at x = -1, so the
    # line gives 4/3 + 1.5 * 2 = 13/3 at x = 1 and 4/3 + 1.5 = 17/6 at x = 0.
    final, early = torch.tensor([[3.0]]), torch.tensor([[[0.0], [1.0]]])
    assert float(delta_extrapolate(final, early)) == pytest.approx(13 / 3)
    assert float(delta_extrapolate(final, early, virtual_offset=0.0)) == pytest.approx(17 / 6)
    torch.testing.assert_close(trajectory_weights(2, 1.0),
                               torch.tensor([-2 / 3, 1 / 3, 4 / 3], dtype=torch.float64))
    # A flat trajectory gives the final logits back; a straight one continues.
    z = torch.tensor([[0.5, -1.0, 2.0]])
    torch.testing.assert_close(delta_extrapolate(z, z[:, None].repeat(1, 3, 1)), z)
    step = torch.tensor([0.1, 0.2, -0.3])
    line = torch.stack([z[0] - k * step for k in (3, 2, 1)])[None]
    torch.testing.assert_close(delta_extrapolate(z, line, virtual_offset=2.0), z + 2 * step)


def test_relative_top_filter_by_hand():
    # pred = 2z - e = [ln 4, ln 2, ln 1] -> p = [4/7, 2/7, 1/7]: relative_top 0.3 keeps
    # p >= 0.3 * 4/7 = 0.171, tokens 0 and 1; 0.2 keeps all three.
    z = torch.tensor([[math.log(4), math.log(2), 0.0]])
    out = delta_logits(z, z[:, None].clone(), relative_top=0.3)
    expected = torch.log(torch.tensor([4 / 7, 2 / 7]))
    torch.testing.assert_close(out[0, :2], expected)
    assert out[0, 2] == -INF
    assert torch.isfinite(delta_logits(z, z[:, None].clone(), relative_top=0.2)).all()
    scored = delta_logits(z, z[:, None].clone(), relative_top=0.3, filtered_value=-1000.0)
    assert float(scored[0, 2]) == -1000.0
    ruled_out = torch.tensor([[1.0, -INF, 0.0]])
    got = delta_logits(ruled_out, torch.tensor([[[-INF, 0.0, 0.0]]]), relative_top=0.0)
    assert got[0, 1] == -INF and torch.isfinite(got[0, [0, 2]]).all()


@DECODING
@given(layer_logits(), st.floats(0.0, 3.0), st.sampled_from([0.0, 0.1, 0.5]))
def test_properties_on_random_logits(pair, offset, relative_top):
    final, early = pair
    out = delta_logits(final, early, virtual_offset=offset, relative_top=relative_top)
    assert out.dtype == final.dtype and not torch.isnan(out).any()
    assert torch.isneginf(out[torch.isneginf(final)]).all()
    pred = delta_extrapolate(final, early, virtual_offset=offset)
    top = pred.argmax(-1, keepdim=True)
    assert torch.isfinite(out.gather(-1, top)).all()  # the predicted favourite is always kept
    torch.testing.assert_close(out, rows_alone(lambda f, e: delta_logits(
        f, e, virtual_offset=offset, relative_top=relative_top), final, early))


@DECODING
@given(st.integers(1, 5), st.integers(1, 6), st.floats(0.0, 3.0))
def test_prediction_equals_least_squares(layers, vocab, offset):
    gen = torch.Generator().manual_seed(layers * 10 + vocab)
    final = torch.randn(2, vocab, generator=gen) * 5
    early = torch.randn(2, layers, vocab, generator=gen) * 5
    x = torch.arange(-layers, 1, dtype=torch.float64)
    design = torch.stack([torch.ones_like(x), x], dim=1)
    y = torch.cat([early, final[:, None]], dim=1).double()  # (2, N+1, V)
    fit = torch.linalg.lstsq(design.expand(2, -1, -1), y).solution  # (2, 2, V)
    want = fit[:, 0] + offset * fit[:, 1]
    got = delta_extrapolate(final, early, virtual_offset=offset)
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-5)


def test_options_and_registry():
    method = methods.get("delta")
    assert method.stage == "logits" and method.tap == "layers" and "delta" in methods.scoring_modes()
    for other in ("sled", "dola", "contrastive"):
        with pytest.raises(ConfigError, match="enable at most one"):
            with_overrides(None, delta=True, **{other: True})
    with pytest.raises(ConfigError, match="delta.virtual_offset"):
        DeltaOptions(virtual_offset=-1.0)
    with pytest.raises(ConfigError, match="delta.relative_top"):
        DeltaOptions(relative_top=1.5)
    preset = apply_preset(with_overrides(None, delta=True), "truthfulqa")
    assert preset.delta.relative_top == 0.0
    with pytest.raises(ConfigError, match="consecutive layers"):
        method.logits(torch.zeros(1, 3), torch.zeros(1, 2, 3), DeltaOptions(), [1, 3])


def _pick(base, layers, offset):
    def pick(final, hidden_states):
        early = early_logits(base, hidden_states, layers)
        return delta_logits(final, early, virtual_offset=offset).argmax(-1)

    return pick


def test_generation_equals_cache_free_reference_and_batching(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    ids, mask = prompt_batch(model.tokenizer)
    layers = model.tap.candidate_layers
    out = model.generate(ids, mask, delta={"virtual_offset": 2.0}, max_new_tokens=6,
                         return_records=True)
    expected = reference_generate(model.base, ids, mask, 6, _pick(model.base, layers, 2.0))
    assert torch.equal(out.sequences, expected) and out.layers == layers
    assert not torch.equal(out.sequences, model.generate(ids, mask, max_new_tokens=6))
    for row in range(ids.shape[0]):
        keep = mask[row].bool()
        alone = model.generate(ids[row : row + 1, keep], delta={"virtual_offset": 2.0},
                               max_new_tokens=6)
        assert torch.equal(alone[0, keep.sum():], out.sequences[row, ids.shape[1]:])


def test_scoring_and_log_probs(tiny_llama_dir):
    model = graft(tiny_llama_dir)
    pair = ("Q: Name a color.\nA:", " Red.")
    decoding = with_overrides(DecodingConfig(), delta={"relative_top": 0.0})
    got = score_pairs(model, [pair], ["delta"], decoding)["delta"][0]
    ids, start = encode_pair(model.tokenizer, *pair)
    with torch.no_grad():
        out = model.base(torch.tensor([ids]), output_hidden_states=True)
    rows = slice(start - 1, len(ids) - 1)
    final = out.logits[0, rows]
    early = model.base.get_output_embeddings()(torch.stack(
        [out.hidden_states[layer][0, rows] for layer in model.tap.candidate_layers], dim=1))
    targets = torch.tensor(ids[start:])
    log_probs = methods.get("delta").log_probs(final, early, decoding.delta)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(len(targets)))
    expected = log_probs.gather(-1, targets[:, None]).sum()
    assert got == pytest.approx(float(expected), rel=1e-5, abs=1e-4)
    from toolkit.eval import harness

    assert "delta" in harness.scored()
    assert harness._decoding(model, None, {"delta": True}, {"delta_virtual_offset": 0.5}
                             ).delta == DeltaOptions(enabled=True, virtual_offset=0.5)


def test_lm_eval_log_likelihoods_are_deltas_distribution(tiny_llama_dir, tmp_path):
    from toolkit.eval import harness

    model = graft(tiny_llama_dir)
    model.save_pretrained(tmp_path / "ckpt")
    lm = harness.SurgeryLM(pretrained=str(tmp_path / "ckpt"), device="cpu", batch_size=64,
                           delta=True, delta_virtual_offset=0.5)
    assert lm.get_model_info()["surgery"]["method"] == "delta"
    context = lm.tok_encode("The capital of France is")
    requests = [(("ctx", f"t{i}"), context, [i]) for i in range(model.base.config.vocab_size)]
    logliks = torch.tensor([ll for ll, _ in lm._loglikelihood_tokens(requests,
                                                                     disable_tqdm=True)])
    assert math.fsum(math.exp(v) for v in logliks.tolist()) == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad(), model.tap.capture(last_only=True):
        final = model.base(torch.tensor([context])).logits[:, -1].float()
        early = model.tap.early_logits().float()
    want = delta_extrapolate(final, early, virtual_offset=0.5).log_softmax(-1)[0]
    torch.testing.assert_close(logliks.float(), want, atol=1e-4, rtol=1e-5)
