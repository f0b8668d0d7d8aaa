"""Feature cache, the Lightning head module, train_head, export and checkpoint resume."""

import math

import pytest
import torch
from _lpo import by_sum, small_model

from toolkit.core.errors import DataError
from toolkit.decoding import temperature_log_probs
from toolkit.graft.augmented import AugmentedModel
from toolkit.lpo import cache
from toolkit.lpo.collect import collect_pairs
from toolkit.lpo.config import CollectConfig, TrainConfig, TrainerConfig
from toolkit.lpo.losses import lpo_loss
from toolkit.lpo.module import HeadLPOModule, LPODataModule
from toolkit.lpo.train import fit_head, train_head
from toolkit.methods.options import GraftConfig, HeadConfig


@pytest.fixture(scope="module")
def pairs_file(tiny_llama_dir, tmp_path_factory):
    model = small_model(tiny_llama_dir, "token")
    gen = torch.Generator().manual_seed(1)
    prompts = [{"id": str(i), "prompt_ids": torch.randint(3, 300, (3 + i % 3,), generator=gen).tolist()}
               for i in range(16)]
    out = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    config = CollectConfig(num_replies=4, prompts_per_batch=16, max_new_tokens=5)
    stats = collect_pairs(model, prompts, config, out, reward=by_sum, progress=False)
    assert stats.pairs == 16
    return out


def _trainer(**kw):
    base = dict(accelerator="cpu", max_epochs=2, batch_size=4, lr=1e-2, seed=0)
    base.update(kw)
    return TrainerConfig(**base)


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_cache_holds_the_frozen_lm_features(tiny_llama_dir, pairs_file, level, tmp_path):
    model = small_model(tiny_llama_dir, level)
    local = tmp_path / "pairs.jsonl"
    local.write_bytes(pairs_file.read_bytes())
    tensors, meta = cache.load_cache(cache.build_cache(model, local, progress=False))
    assert meta["level"] == level and meta["pairs"] == "16"
    pair = cache.read_pairs(local)[5]
    ids = torch.tensor([pair["prompt_ids"] + pair["rejected_ids"]])
    hidden = model.head_features(ids)[0]
    logits = model.base(ids).logits[0]
    start, n = len(pair["prompt_ids"]) - 1, len(pair["rejected_ids"])
    steps = torch.arange(start, start + n)
    if level == "sequence":
        assert torch.allclose(tensors["prompt_h"][5], hidden[start], atol=1e-5)
        assert "rejected_h" not in tensors
    else:
        assert torch.allclose(tensors["rejected_h"][5, :n], hidden[steps], atol=1e-5)
    grid = model.head.temperatures
    expected = temperature_log_probs(logits[steps], ids[0, steps + 1], grid)
    got = tensors["rejected_lp"][5, :n]
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    assert torch.allclose(got[torch.isfinite(got)], expected[torch.isfinite(expected)], atol=1e-4)
    assert tensors["rejected_mask"][5].sum() == n
    assert tensors["rejected_tau"][5, :n].tolist() == pair["rejected_tau"]
    word = torch.log_softmax(logits[steps], -1).gather(-1, ids[0, steps + 1, None]).sum()
    assert tensors["rejected_word_logp"][5].item() == pytest.approx(word.item(), abs=1e-4)


def test_cache_is_reused_and_rebuilt(tiny_llama_dir, pairs_file, tmp_path, monkeypatch):
    model = small_model(tiny_llama_dir)
    local = tmp_path / "pairs.jsonl"
    local.write_bytes(pairs_file.read_bytes())
    path = cache.build_cache(model, local, progress=False)
    calls = []
    real = cache.compute_features
    monkeypatch.setattr(cache, "compute_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert cache.build_cache(model, local, progress=False) == path and not calls
    lines = local.read_text().splitlines(keepends=True)
    local.write_text("".join(lines[:-1]))
    cache.build_cache(model, local, progress=False)
    assert calls and cache.load_cache(path)[1]["pairs"] == "15"
    calls.clear()
    other = AugmentedModel(model.base, GraftConfig(head=HeadConfig(
        hidden_size=16, temperatures=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9])), model.tokenizer)
    cache.build_cache(other, local, progress=False)
    assert calls and cache.load_cache(path)[0]["chosen_lp"].shape[-1] == 6
    smaller = AugmentedModel(model.base, GraftConfig(head=HeadConfig(
        hidden_size=16, temperatures=[0.0, 0.5, 1.0])), model.tokenizer)
    with pytest.raises(DataError, match="jsonl:1: chosen_tau holds temperature index [3-5], "
                       "outside 0..2"):
        cache.build_cache(smaller, local, progress=False)


@pytest.mark.parametrize("damage", ["cut", "garbage", "header"])
def test_a_damaged_cache_is_rebuilt(tiny_llama_dir, pairs_file, tmp_path, damage):
    """A cut-off file, one that is no safetensors, or one whose header lies about its size:
    rebuilt, not a SafetensorError or OSError."""
    model = small_model(tiny_llama_dir)
    local = tmp_path / "pairs.jsonl"
    local.write_bytes(pairs_file.read_bytes())
    path = cache.build_cache(model, local, progress=False)
    whole = {k: v.clone() for k, v in cache.load_cache(path)[0].items()}  # not the mapped file
    data = path.read_bytes()
    path.write_bytes({"cut": data[: len(data) // 2], "garbage": b"not a cache",
                      "header": (10**6).to_bytes(8, "little") + data[8:]}[damage])
    assert cache.build_cache(model, local, progress=False) == path
    rebuilt = cache.load_cache(path)[0]
    torch.testing.assert_close(rebuilt, whole, equal_nan=True, rtol=0, atol=0)


def test_module_trains_only_the_head_and_starts_at_log2(tiny_llama_dir, pairs_file):
    model = small_model(tiny_llama_dir)
    module = HeadLPOModule(model.head, loss="latent", level="sequence")
    assert set(map(id, module.parameters())) == set(map(id, model.head.parameters()))
    optimizer = module.configure_optimizers()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert set(map(id, params)) == set(map(id, model.head.parameters()))
    data = LPODataModule(cache.build_cache(model, pairs_file, progress=False), batch_size=8)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    head_c, head_r = module.head_logits(batch)
    for loss in ("tokens", "tokens_separate", "latent"):
        value = lpo_loss(loss, 1.0, head_c, head_r, batch).loss
        assert value.item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_train_head_exports_and_leaves_base_untouched(tiny_llama_dir, pairs_file, tmp_path):
    model = small_model(tiny_llama_dir, "token")
    before = {k: v.clone() for k, v in model.base.state_dict().items()}
    initial = {k: v.clone() for k, v in model.head.state_dict().items()}
    run, work = tmp_path / "run", tmp_path / "work"
    config = _trainer(max_epochs=3, logger=True, log_every_n_steps=1,
                      checkpoint_dir=str(work / "lightning"))
    result = train_head(model, pairs_file, TrainConfig(loss="latent"), config, run,
                        log_dir=work / "training")
    assert (work / "lightning" / "last.ckpt").exists()
    assert list((work / "training").rglob("metrics.csv"))
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("tokenizer")) == [
        "README.md", "augment_config.json", "config.json", "custom_generate", "head.safetensors"]
    after = model.base.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert result.steps == 12 and len(result.losses) == 12
    assert all(math.isfinite(x) for x in result.losses)
    assert result.losses[0] == pytest.approx(math.log(2.0), abs=1e-6)
    assert sum(result.losses[-4:]) < sum(result.losses[:4])
    reloaded = AugmentedModel.from_pretrained(result.out_dir)
    trained = model.head.state_dict()
    assert all(torch.equal(reloaded.head.state_dict()[k], v) for k, v in trained.items())
    assert any(not torch.equal(initial[k], v) for k, v in trained.items())


def test_resume_from_checkpoint_matches_uninterrupted_run(tiny_llama_dir, pairs_file, tmp_path):
    train = TrainConfig(loss="tokens_separate")
    model = small_model(tiny_llama_dir)
    file = cache.build_cache(model, pairs_file, progress=False)
    initial = {k: v.clone() for k, v in model.head.state_dict().items()}
    _, full = fit_head(model, file, train, _trainer(max_epochs=4), tmp_path / "a")
    ckpts = tmp_path / "ckpt"
    fit_head(model, file, train, _trainer(max_epochs=2, checkpoint_dir=str(ckpts)), tmp_path / "b")
    assert (ckpts / "last.ckpt").exists()
    saved = torch.load(ckpts / "last.ckpt", weights_only=False)["state_dict"]
    assert all(k.startswith("head.") for k in saved)
    with torch.no_grad():  # the resumed run must take its weights from the checkpoint
        for param in model.head.parameters():
            param.normal_()
    _, resumed = fit_head(model, file, train,
                          _trainer(max_epochs=4, ckpt_path=str(ckpts / "last.ckpt")), tmp_path / "c")
    for (name, a), b in zip(full.head.state_dict().items(), resumed.head.state_dict().values(),
                            strict=True):
        assert torch.allclose(a, b, atol=1e-7), name
    assert not torch.allclose(full.head.state_dict()[name], initial[name])
