"""Multi-process head training: 2 CPU processes (DDP, gloo) match 1 process; GPU DDP/FSDP."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from _lpo import by_sum

from toolkit.graft.augmented import AugmentedModel
from toolkit.lpo.cache import build_cache
from toolkit.lpo.collect import collect_pairs
from toolkit.lpo.config import CollectConfig, TrainConfig, TrainerConfig
from toolkit.lpo.train import train_head
from toolkit.methods.options import GraftConfig, HeadConfig

SCRIPT = textwrap.dedent("""
    import sys
    from toolkit.graft.augmented import AugmentedModel
    from toolkit.lpo.config import TrainConfig, TrainerConfig
    from toolkit.lpo.train import train_head

    checkpoint, pairs, out = sys.argv[1:4]
    trainer = TrainerConfig(accelerator="cpu", devices=2, strategy="ddp", max_epochs=3,
                            batch_size=4, lr=1e-2, seed=0)
    model = AugmentedModel.from_pretrained(checkpoint)
    train_head(model, pairs, TrainConfig(loss="latent"), trainer, out)
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def prepared(tiny_llama_dir, tmp_path_factory):
    """A saved AugmentedModel (untrained head), 16 pairs and their feature cache."""
    root = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(0)
    model = AugmentedModel.graft(tiny_llama_dir, GraftConfig(head=HeadConfig(hidden_size=16)))
    model.save_pretrained(root / "init")
    gen = torch.Generator().manual_seed(2)
    prompts = [{"id": str(i), "prompt_ids": torch.randint(3, 300, (4,), generator=gen).tolist()}
               for i in range(16)]
    config = CollectConfig(num_replies=4, prompts_per_batch=16, max_new_tokens=5)
    collect_pairs(model, prompts, config, root / "pairs.jsonl", reward=by_sum, progress=False)
    build_cache(model, root / "pairs.jsonl", progress=False)
    return root


@pytest.mark.slow
def test_two_cpu_processes_match_one_with_the_same_global_batch(prepared):
    root = prepared
    (root / "run_ddp.py").write_text(SCRIPT)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(root / "run_ddp.py"), str(root / "init"),
           str(root / "pairs.jsonl"), str(root / "out2")]
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    single = AugmentedModel.from_pretrained(root / "init")
    initial = {k: v.clone() for k, v in single.head.state_dict().items()}
    trainer = TrainerConfig(accelerator="cpu", devices=1, max_epochs=3, batch_size=8, lr=1e-2,
                            seed=0)
    result = train_head(single, root / "pairs.jsonl", TrainConfig(loss="latent"), trainer,
                        root / "out1")
    assert result.steps == 6
    two = AugmentedModel.from_pretrained(root / "out2").head.state_dict()
    for name, value in single.head.state_dict().items():
        assert torch.allclose(two[name], value, atol=1e-5), name
    assert any(not torch.allclose(initial[k], v) for k, v in two.items())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_gpu_strategies_train_and_export(prepared, strategy, tmp_path):
    model = AugmentedModel.from_pretrained(prepared / "init")
    trainer = TrainerConfig(accelerator="gpu", devices=1, strategy=strategy,
                            precision="bf16-mixed", max_epochs=3, batch_size=8, lr=1e-2)
    result = train_head(model, prepared / "pairs.jsonl", TrainConfig(loss="latent"), trainer,
                        tmp_path / "out")
    assert result.steps == 6 and all(torch.isfinite(torch.tensor(result.losses)))
    assert result.losses[-1] < result.losses[0]
    reloaded = AugmentedModel.from_pretrained(tmp_path / "out")
    for name, value in model.head.state_dict().items():
        assert torch.equal(reloaded.head.state_dict()[name].cpu(), value.cpu()), name
