"""Every architecture a user brings: coverage over transformers, the graft-time probe, offload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM

from toolkit.core.errors import UnsupportedArchitectureError
from toolkit.graft import AugmentedModel, EarlyExitTap, families, probe
from toolkit.methods.options import GraftConfig, HeadConfig
from toolkit.testing import build_any_tiny, build_tiny_model, coverage, excluded
from toolkit.testing.architectures import CAUSAL_LM_TYPES, LOGIT_KEYS

ROOT = Path(__file__).resolve().parents[2]
SMALL = GraftConfig(head=HeadConfig(hidden_size=8))
# Dense, MoE, sliding-window, hybrid, state-space and logit-transform families named by issue 17.
MUST_PASS = (
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2",
    "smollm3", "mixtral", "qwen3_moe", "gpt_oss", "olmoe", "deepseek_v3", "mamba", "mamba2",
    "jamba", "bamba", "falcon_h1", "granite", "cohere", "minicpm3", "hyperclovax", "gpt2",
    "gpt_neox", "opt", "bloom", "falcon", "phi",
)


@pytest.mark.slow
def test_coverage_over_the_installed_transformers():
    """A tiny model of every causal-LM type: >= 90% of the decoder-only text types pass every
    step; each one that does not carries a one-line reason."""
    results = {r.model_type: r for r in coverage.run()}
    assert set(results) == set(CAUSAL_LM_TYPES)
    tried = [r for r in results.values() if r.status != "excluded"]
    passed = [r for r in tried if r.status == "pass"]
    assert len(passed) >= 0.9 * len(tried), coverage.summary(list(results.values()))
    assert [t for t in MUST_PASS if results[t].status != "pass"] == []
    for r in results.values():
        assert (r.status == "pass") == (r.reason == ""), r
        assert "\n" not in r.reason
    for model_type, reason in families.REFUSED.items():
        assert results[model_type].status == "fail" and reason in results[model_type].reason
    # The docs page and the README quote this run (regenerate: benchmarks/coverage_table.py)
    # when it is made with the transformers the page was written with.
    page = (ROOT / "docs" / "architectures.md").read_text()
    if f"transformers {transformers.__version__}'s" in page:
        summary = coverage.summary(list(results.values())).split(" (")[0]
        assert coverage.table(list(results.values())) in page and f"**{summary}" in page
        assert f"**{summary}**" in (ROOT / "README.md").read_text()


def test_excluded_types_are_not_decoder_only_text():
    assert excluded("bart").startswith("encoder-decoder")
    assert excluded("bert").startswith("encoder config")
    assert excluded("gemma3").startswith("composite config (text_config, vision_config)")
    assert excluded("llama") is None and excluded("dbrx") is None  # sub-configs of one model
    assert excluded("gpt_neox") is None  # has is_decoder=False by default, but no cross-attention


@pytest.mark.parametrize(("model_type", "scale", "softcap"), [
    ("granite", 1 / 4.0, None),  # logits / logits_scaling
    ("hyperclovax", 4.0, None),  # logits * logits_scaling: an exception to Granite's rule
    ("minicpm3", 1 / 4.0, None),  # hidden / (hidden_size / dim_model_base) = 64 / 16
    ("cohere", 0.25, None),  # logits * logit_scale
    ("falcon_h1", 0.5, None),  # logits * lm_head_multiplier
    ("gemma2", 1.0, 5.0), ("recurrent_gemma", 1.0, 5.0), ("xlstm", 1.0, 5.0),
])
def test_logit_transforms_read_from_the_config(model_type, scale, softcap):
    model = build_any_tiny(model_type)
    parts = families.model_parts(model)
    assert parts.logit_scale == pytest.approx(scale) and parts.softcap == softcap
    assert probe.check_tap(model) < 1e-4
    tap = EarlyExitTap(model, layers="all")  # the decoding path's reused buffers transform alike
    with torch.no_grad(), tap.capture(last_only=True):
        model(input_ids=torch.tensor([[1, 2, 3]]))
        torch.testing.assert_close(tap.early_logits(reuse=True), tap.early_logits(),
                                   atol=1e-5, rtol=1e-5)


def test_probe_refuses_a_transform_discovery_gets_wrong(monkeypatch):
    """Without hyperclovax's exception its logits_scaling would be divided, not multiplied: the
    probe refuses with one line naming the type and the difference."""
    model = build_any_tiny("hyperclovax")
    monkeypatch.setattr(families, "EXCEPTIONS", {})
    with pytest.raises(UnsupportedArchitectureError) as err:
        AugmentedModel(model, SMALL)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("model type 'hyperclovax' (HyperCLOVAXForCausalLM): the tap's "
                              "last-layer logits differ from the model's own (max abs diff ")
    assert "tolerance" in message and "torch.float32" in message


def test_refused_types_fail_before_the_probe():
    with pytest.raises(UnsupportedArchitectureError,
                       match=r"^model type 'xlnet' \(XLNetLMHeadModel\) is not supported: its "):
        families.model_parts(build_any_tiny("xlnet"))


def test_probe_leaves_rng_training_mode_hooks_and_grad_alone():
    model = build_tiny_model("gemma2").train()
    model.model.layers[1].eval()
    modes = [m.training for m in model.modules()]
    torch.manual_seed(5)
    state = torch.get_rng_state()
    diff = probe.check_tap(model)
    assert torch.equal(torch.get_rng_state(), state)
    assert [m.training for m in model.modules()] == modes
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert 0.0 <= diff < 1e-4


def test_probe_tolerance_follows_the_dtype():
    """A logit scale read 1% off the one the model applies (Cohere keeps its own copy) is
    refused in float32 but within bfloat16's rounding."""
    model = build_any_tiny("cohere")
    model.config.logit_scale *= 1.01
    with pytest.raises(UnsupportedArchitectureError, match=r"for torch\.float32\)"):
        probe.check_tap(model)
    assert probe.check_tap(model.to(torch.bfloat16)) > 0
    assert probe.TOLERANCE[torch.bfloat16] > probe.TOLERANCE[torch.float16] > \
        probe.TOLERANCE[torch.float32]
    assert set(LOGIT_KEYS) >= set(families.LOGIT_SCALES) | set(families.SOFT_CAPS)


def test_disk_offloaded_layer_keeps_the_tap_and_sled(tiny_llama_dir, tmp_path):
    """accelerate's hooks load layer 1 from disk as it runs: the tap at layer L still equals the
    model's logits, and SLED decodes exactly as on the model held in memory."""
    device_map = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
                  "model.layers.2": "cpu", "model.layers.3": "cpu", "model.norm": "cpu",
                  "model.rotary_emb": "cpu", "lm_head": "cpu"}
    offloaded = AutoModelForCausalLM.from_pretrained(
        tiny_llama_dir, device_map=device_map, offload_folder=str(tmp_path / "offload"))
    assert offloaded.model.layers[1].self_attn.q_proj.weight.device.type == "meta"
    assert hasattr(offloaded.model.layers[1], "_hf_hook")
    model = AugmentedModel.graft(offloaded, SMALL)  # the probe passes
    plain = AugmentedModel.graft(str(tiny_llama_dir), SMALL)
    ids = torch.tensor([[5, 17, 42, 99, 7], [11, 23, 7, 64, 130]])
    tap = EarlyExitTap(offloaded, layers=[1, 2, 4])
    with torch.no_grad(), tap.capture(last_only=False):
        logits = offloaded(ids).logits
        early = tap.early_logits()
    torch.testing.assert_close(early[:, :, 2], logits, atol=1e-5, rtol=0)
    with torch.no_grad():
        reference = plain.base(ids, output_hidden_states=True)
    torch.testing.assert_close(early[:, :, 0], plain.base.lm_head(reference.hidden_states[1]),
                               atol=1e-5, rtol=0)
    expected = plain.generate(ids, sled=True, max_new_tokens=6, min_new_tokens=6)
    got = model.generate(ids, sled=True, max_new_tokens=6, min_new_tokens=6)
    assert torch.equal(got, expected)
    assert len(set(got[:, -6:].flatten().tolist())) > 2, "degenerate replies test nothing"
