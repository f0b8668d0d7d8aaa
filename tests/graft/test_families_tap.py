"""Architecture discovery, candidate layers and the early-exit tap, on tiny models from disk."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from toolkit.core.errors import ConfigError, UnsupportedArchitectureError
from toolkit.graft import AugmentedModel, EarlyExitTap, candidate_layers, model_parts
from toolkit.methods.options import GraftConfig, HeadConfig
from toolkit.testing import TINY_FAMILIES

PROMPTS = ["The capital of France is", "Two plus"]
L = 4
ATOL = 1e-5


def load(tiny_model_dir, family):
    path = tiny_model_dir(family)
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def softcapped(logits, cap):
    return logits if cap is None else torch.tanh(logits / cap) * cap


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ---- candidate layers -------------------------------------------------------------------------

GOLDEN = {
    (4, False): ([0, 1, 2, 3], [0], [2]),
    (4, True): ([1, 2, 3], None, [2]),
    (32, False): (list(range(32)), list(range(0, 16, 2)), list(range(16, 32, 2))),
    (32, True): (list(range(1, 32)), list(range(2, 16, 2)), list(range(16, 32, 2))),
    (80, False): (list(range(80)), list(range(0, 20, 2)), list(range(60, 80, 2))),
    (80, True): (list(range(1, 80)), list(range(2, 20, 2)), list(range(60, 80, 2))),
}


@pytest.mark.parametrize(("num_layers", "tied"), list(GOLDEN))
def test_candidate_layers_golden(num_layers, tied):
    all_, low, high = GOLDEN[(num_layers, tied)]
    assert candidate_layers("all", num_layers, tied) == all_
    assert candidate_layers(None, num_layers, tied) == all_
    assert candidate_layers("high", num_layers, tied) == high
    if low is None:  # range(2, 2, 2) is empty: say so instead of tapping nothing
        with pytest.raises(ConfigError, match="'low' selects no layer.*0..4"):
            candidate_layers("low", num_layers, tied)
    else:
        assert candidate_layers("low", num_layers, tied) == low


def test_candidate_layers_explicit_list():
    assert candidate_layers([3, 0, 4], 4, tied=True) == [3, 0, 4]
    for bad in ([5], [-1], [1.5], [True], ["2"]):
        with pytest.raises(ConfigError, match=r"sled\.layers.*0\.\.4"):
            candidate_layers(bad, 4, tied=False, key="sled.layers")
    with pytest.raises(ConfigError, match="repeats"):
        candidate_layers([1, 1], 4, tied=False)
    with pytest.raises(ConfigError, match="empty"):
        candidate_layers([], 4, tied=False)
    with pytest.raises(ConfigError, match="'middle'.*'low'"):
        candidate_layers("middle", 4, tied=False)


@given(st.integers(2, 200), st.booleans(), st.sampled_from(["low", "high"]))
def test_buckets_are_even_steps_inside_the_model(num_layers, tied, bucket):
    try:
        layers = candidate_layers(bucket, num_layers, tied)
    except ConfigError:
        return
    assert all(0 <= i < num_layers for i in layers)
    assert all(b - a == 2 for a, b in zip(layers, layers[1:], strict=False))
    assert not (tied and 0 in layers)


# ---- discovery --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_model_parts_of_every_family(family, tiny_model_dir):
    model, _ = load(tiny_model_dir, family)
    parts = model_parts(model)
    assert parts.model_type == family
    assert parts.num_layers == L and parts.layers is model.model.layers
    assert parts.decoder is model.model and parts.norm is model.model.norm
    assert parts.lm_head is model.lm_head and parts.logit_scale == 1.0
    assert parts.tied == family.startswith("gemma")
    assert parts.softcap == (30.0 if family == "gemma2" else None)


def test_not_a_hugging_face_model_is_refused():
    with pytest.raises(UnsupportedArchitectureError, match="Linear has no `config`"):
        EarlyExitTap(torch.nn.Linear(2, 2))


# ---- tap invariants ---------------------------------------------------------------------------


def full_capture(model, tok, layers, early_exit_norm=False):
    tap = EarlyExitTap(model, layers=layers, early_exit_norm=early_exit_norm)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad(), tap.capture(last_only=False):
        out = model(**enc, output_hidden_states=True)
        early = tap.early_logits()
    return tap, out, early


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tap_matches_model_logits_and_hidden_states(family, tiny_model_dir):
    model, tok = load(tiny_model_dir, family)
    tap, out, early = full_capture(model, tok, layers=list(range(L + 1)))
    cap = tap.parts.softcap
    assert early.shape == (2, out.logits.shape[1], L + 1, 300)
    torch.testing.assert_close(early[:, :, L], out.logits, atol=ATOL, rtol=0)
    with torch.no_grad():
        for layer in range(L):
            expected = softcapped(model.lm_head(out.hidden_states[layer]), cap)
            torch.testing.assert_close(early[:, :, layer], expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(tap.final_hidden(), out.hidden_states[-1], atol=ATOL, rtol=0)
    assert not torch.allclose(early[:, :, 1], early[:, :, L - 1], atol=1e-2)


@pytest.mark.parametrize("family", ["gemma", "gemma2", "gemma3_text"])
def test_layer_zero_includes_gemma_embedding_scale(family, tiny_model_dir):
    model, tok = load(tiny_model_dir, family)
    tap, out, early = full_capture(model, tok, layers=[0])
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        scaled = model.model.embed_tokens.weight[enc["input_ids"]] * 64**0.5
        expected = softcapped(model.lm_head(scaled), tap.parts.softcap)
    torch.testing.assert_close(early[:, :, 0], expected, atol=1e-4, rtol=1e-5)


def test_gemma2_softcap_applied_to_early_logits(tiny_model_dir):
    path = tiny_model_dir("gemma2")  # a cap of 1.0 instead of 30 makes the cap bite on tiny logits
    model = AutoModelForCausalLM.from_pretrained(path, final_logit_softcapping=1.0).eval()
    tap, out, early = full_capture(model, AutoTokenizer.from_pretrained(path), [1, 2, L])
    with torch.no_grad():
        raw = model.lm_head(out.hidden_states[2])
    assert tap.parts.softcap == 1.0 and raw.abs().max() > 1.5
    torch.testing.assert_close(early[:, :, 1], torch.tanh(raw), atol=ATOL, rtol=0)
    torch.testing.assert_close(early[:, :, 2], out.logits, atol=ATOL, rtol=0)
    assert (early[:, :, 1] - raw).abs().max() > 0.5
    assert early.abs().max() < 1.0


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_early_exit_norm_applies_the_models_norm(family, tiny_model_dir):
    model, tok = load(tiny_model_dir, family)
    tap, out, early = full_capture(model, tok, layers=[1, L, 2], early_exit_norm=True)
    cap = tap.parts.softcap
    with torch.no_grad():
        for i, layer in ((0, 1), (2, 2)):
            expected = softcapped(model.lm_head(model.model.norm(out.hidden_states[layer])), cap)
            torch.testing.assert_close(early[:, :, i], expected, atol=ATOL, rtol=0)
            raw = softcapped(model.lm_head(out.hidden_states[layer]), cap)
            assert not torch.allclose(early[:, :, i], raw, atol=1e-3)
    torch.testing.assert_close(early[:, :, 1], out.logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_early_exit_norm_defaults_to_the_model_types_choice(family, tiny_model_dir):
    model, _ = load(tiny_model_dir, family)
    measured = family == "gemma3_text"  # docs/methods.md section 1
    assert EarlyExitTap(model).early_exit_norm is measured
    assert EarlyExitTap(model, early_exit_norm=not measured).early_exit_norm is (not measured)
    grafted = AugmentedModel(model, GraftConfig(head=HeadConfig(hidden_size=4)))
    assert grafted.tap.early_exit_norm is measured
    assert grafted.graft_config.early_exit_norm is measured, "made explicit for the checkpoint"
    forced = AugmentedModel(model, GraftConfig(early_exit_norm=False, head=HeadConfig(hidden_size=4)))
    assert forced.tap.early_exit_norm is False and forced.graft_config.early_exit_norm is False


def test_positions_last_only_and_project(tiny_model_dir):
    model, tok = load(tiny_model_dir, "llama")
    tap, out, early = full_capture(model, tok, layers=[0, 2, L])
    positions = torch.tensor([[0, 5], [3, 3]])
    with torch.no_grad():
        picked = tap.early_logits(positions=positions)
        projected = tap.project(torch.stack(out.hidden_states[:3], dim=-2))
        mask = torch.zeros(early.shape[:2], dtype=torch.bool)
        mask[0, [1, 5]] = mask[1, 3] = True
        masked = tap.early_logits(positions=mask)
    assert picked.shape == (2, 2, 3, 300)
    torch.testing.assert_close(picked[0, 1], early[0, 5], atol=ATOL, rtol=0)
    torch.testing.assert_close(picked[1, 0], early[1, 3], atol=ATOL, rtol=0)
    assert masked.shape == (3, 3, 300)  # the True entries only, row-major
    torch.testing.assert_close(masked, torch.stack([early[0, 1], early[0, 5], early[1, 3]]),
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(projected[:, :, 2], early[:, :, 1], atol=ATOL, rtol=0)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad(), tap.capture(last_only=True):
        model(**enc)
        torch.testing.assert_close(tap.early_logits(), early[:, -1], atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(tap.final_hidden(), out.hidden_states[-1][:, -1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_last_only_during_generate_holds_newest_position(family, tiny_model_dir):
    model, tok = load(tiny_model_dir, family)
    layers = candidate_layers("all", L, model_parts(model).tied) + [L]
    tap = EarlyExitTap(model, layers=layers, early_exit_norm=False)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    before = hook_count(model)
    with torch.no_grad(), tap.capture(last_only=True):
        assert hook_count(model) == before + len(layers)
        seq = model.generate(**enc, max_new_tokens=3, min_new_tokens=3, do_sample=False)
        early, final = tap.early_logits(), tap.final_hidden()
    assert hook_count(model) == before
    context = seq[:, :-1]
    mask = torch.cat([enc["attention_mask"], torch.ones(2, 2, dtype=torch.long)], dim=1)
    with torch.no_grad():
        ref = model(context, attention_mask=mask, use_cache=False, output_hidden_states=True)
        cap = tap.parts.softcap
        expected = [
            softcapped(model.lm_head(ref.hidden_states[i][:, -1]), cap) for i in layers[:-1]
        ]
    assert early.shape == (2, len(layers), 300) and final.shape == (2, 64)
    torch.testing.assert_close(early[:, -1], ref.logits[:, -1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(early[:, :-1], torch.stack(expected, 1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(final, ref.hidden_states[-1][:, -1], atol=1e-4, rtol=1e-4)
    assert torch.equal(early[:, -1].argmax(-1), seq[:, -1])


def test_hooks_only_inside_block_and_misuse_errors(tiny_model_dir):
    model, tok = load(tiny_model_dir, "llama")
    tap = EarlyExitTap(model)
    with pytest.raises(RuntimeError, match="nothing captured"):
        tap.early_logits()
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        with tap.capture():
            model(**enc)
            with pytest.raises(RuntimeError, match="nest"), tap.capture():
                pass
            with pytest.raises(ConfigError, match="last_only=False"):
                tap.early_logits(positions=torch.zeros(2, 1, dtype=torch.long))
        kept = tap.early_logits()
        model(enc["input_ids"][:, :3])
    assert hook_count(model) == 0
    torch.testing.assert_close(tap.early_logits(), kept, atol=0, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_project_moves_hidden_to_lm_head_device(tiny_model_dir):
    model, _ = load(tiny_model_dir, "gemma2")
    tap = EarlyExitTap(model, early_exit_norm=True)
    hidden = torch.randn(2, 3, 64)
    expected = tap.project(hidden)
    model.model.norm.cuda()
    model.lm_head.cuda()
    moved = tap.project(hidden)
    assert moved.device.type == "cuda"
    torch.testing.assert_close(moved.cpu(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_early_logits_with_layers_and_lm_head_on_different_devices(tiny_model_dir):
    path = tiny_model_dir("llama")
    device_map = {
        "model.embed_tokens": "cpu",
        "model.layers": "cpu",
        "model.rotary_emb": "cpu",
        "model.norm": 0,
        "lm_head": 0,
    }
    split = AutoModelForCausalLM.from_pretrained(path, device_map=device_map).eval()
    model, tok = load(tiny_model_dir, "llama")
    _, _, expected = full_capture(model, tok, layers=[0, 2, L], early_exit_norm=True)
    _, _, early = full_capture(split, tok, layers=[0, 2, L], early_exit_norm=True)
    assert early.device.type == "cuda"
    torch.testing.assert_close(early.cpu(), expected, atol=1e-4, rtol=1e-4)


def test_an_unset_early_exit_norm_matches_the_checkpoints_resolved_choice():
    from toolkit.recipes.model_files import check_graft

    saved = GraftConfig(early_exit_norm=True, head=HeadConfig(hidden_size=8))
    check_graft("ckpt", GraftConfig(), saved)  # no graft section
    check_graft("ckpt", GraftConfig(head=HeadConfig(hidden_size=8)), saved)  # the model's default
    with pytest.raises(ConfigError, match="graft.early_exit_norm: recipe False vs checkpoint True"):
        check_graft("ckpt", GraftConfig(early_exit_norm=False, head=HeadConfig(hidden_size=8)),
                    saved)


# ---- buffer reuse -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", TINY_FAMILIES)
@pytest.mark.parametrize("layers", ["all", [0, 2, L]], ids=["early-only", "with-final"])
def test_reused_buffers_give_the_same_logits_without_new_tensors(family, layers, tiny_model_dir):
    model, tok = load(tiny_model_dir, family)
    tap = EarlyExitTap(model, layers=layers, early_exit_norm=family == "gemma3_text")
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    kept = []
    with torch.no_grad(), tap.capture(last_only=True):
        for step in range(2):
            ids = enc["input_ids"] if step == 0 else enc["input_ids"][:, -1:] + step
            model(input_ids=ids)
            fresh = tap.early_logits()
            reused = tap.early_logits(reuse=True)
            torch.testing.assert_close(reused, fresh, atol=1e-6, rtol=1e-6)
            kept.append(reused)
    assert kept[0].data_ptr() == kept[1].data_ptr()  # the second step wrote into the first's
    assert fresh.data_ptr() != kept[1].data_ptr()
    assert len(tap._buffers) == 0  # released with the capture, not held for the model's life


def test_reuse_is_ignored_where_autograd_or_every_position_needs_fresh_tensors(tiny_model_dir):
    model, tok = load(tiny_model_dir, "llama")
    tap = EarlyExitTap(model, layers="all")
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with tap.capture(last_only=True):
        model(**enc)
        first, second = tap.early_logits(reuse=True), tap.early_logits(reuse=True)
    assert first.requires_grad and first.data_ptr() != second.data_ptr()
    with torch.no_grad(), tap.capture(last_only=False):
        model(**enc)
        first, second = tap.early_logits(reuse=True), tap.early_logits(reuse=True)
    assert first.data_ptr() != second.data_ptr()
