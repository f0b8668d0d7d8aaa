"""Python snippets of docs/ run as written against a tiny checkpoint saved the way the
quickstart saves its own (SLED and top-n-sigma on, the adaptive head, sampling, seed 0); only
the paths are swapped for test ones (a model preset: the tiny model). README's example:
test_readme_example.py; docs/plugins.md's first two blocks: tests/methods/test_plugins.py;
docs/serving.md's: tests/serving/test_real_server.py. Every ```python block of README and docs/
is run by one of them (`test_every_python_block_is_run`); docs/DESIGN.md's signature listings
are ```text.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from _generation import small_graft

from toolkit import methods
from toolkit.graft.augmented import AugmentedModel
from toolkit.methods import registry
from toolkit.methods.options import with_overrides

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = '"checkpoints/quickstart"'


def blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)


@pytest.fixture(scope="module")
def quickstart_like(tiny_llama_dir, tmp_path_factory) -> Path:
    am = AugmentedModel.graft(str(tiny_llama_dir), small_graft())
    am.decoding = with_overrides(None, sled={"evolution_rate": 2.0, "evolution_scale": 10},
                                 top_n_sigma=1.0, adaptive_temperature=True, do_sample=True,
                                 max_new_tokens=24, seed=0)
    return am.save_pretrained(tmp_path_factory.mktemp("quickstart") / "ckpt")


@pytest.fixture
def layer_mix():
    """docs/plugins.md's toy method, registered (its first block); the registry restored after."""
    saved = dict(registry._METHODS)
    namespace: dict = {}
    exec(compile(blocks("plugins.md")[0], "plugins.md", "exec"), namespace)
    methods.register(namespace["METHOD"])
    yield
    registry._METHODS.clear()
    registry._METHODS.update(saved)


def run(code: str, **paths: Path) -> dict:
    for quoted, path in paths.items():
        assert quoted in code, quoted
        code = code.replace(quoted, repr(str(path)))
    namespace: dict = {}
    exec(compile(code, "snippet", "exec"), namespace)
    return namespace


def test_plugins_using_it_on_a_checkpoint_that_saved_sled(layer_mix, quickstart_like):
    """The plugin's logits-stage method replaces the checkpoint's SLED instead of clashing."""
    code = next(b for b in blocks("plugins.md") if "am.generate(" in b)
    ns = run(code, **{QUICKSTART: quickstart_like})
    out = ns["out"]
    shift = out.records["layer_mix_shift"]
    assert out.layer_mix_shift is shift
    assert shift.shape == out.reply_mask.shape and shift.shape[1] == 8
    assert bool((shift[out.reply_mask] > 0).all())
    assert out.sled_layer_weights is None


def test_transformers_callable_and_checkpoint_folder(tiny_llama_dir, quickstart_like):
    """docs/transformers.md's `decoder(...)` block, then its custom_generate folder block on the
    quickstart-like checkpoint; its "or dola=True" alternative as well."""
    first, folder = blocks("transformers.md")[:2]
    base = {'"/models/llama-3-8b"': tiny_llama_dir}
    ns = run(first, **base)
    assert ns["out"].shape[1] == ns["enc"]["input_ids"].shape[1] + 32
    ns = run(first + folder, **base, **{QUICKSTART: quickstart_like})
    assert ns["out"].shape[1] == ns["enc"]["input_ids"].shape[1] + 32
    dola = folder.replace('sled={"evolution_scale": 10}', "dola=True")
    assert dola != folder
    torch.manual_seed(0)  # the folder samples, as the checkpoint does, from the global stream
    ns = run(first + dola, **base, **{QUICKSTART: quickstart_like})
    loaded = AugmentedModel.from_pretrained(quickstart_like)
    expected = loaded.generate(**ns["enc"], max_new_tokens=32, adaptive_temperature=False,
                               dola=True, sled=False, seed=0)
    assert torch.equal(ns["out"], expected)


@pytest.mark.parametrize("page", ["python.md", "real-models.md"])
def test_the_preset_snippets_run_with_the_tiny_model_in_the_presets_place(
        page, tiny_llama_dir, tmp_path, monkeypatch):
    """docs/python.md's "Graft a fresh head" and docs/real-models.md's block, as written, with
    `prepare_preset` giving the tiny model (the real one is the `real` marker's): the graft
    taps the layers asked for, and a saved checkpoint loads back with the same head."""
    from toolkit.sources import presets

    asked = []
    monkeypatch.setattr(presets, "prepare_preset",
                        lambda name, **kw: asked.append(name) or tiny_llama_dir)
    monkeypatch.chdir(tmp_path)
    [code] = blocks(page)
    ns = run(code)
    assert asked == ["smollm2-135m-instruct"]
    am = ns.get("fresh") or ns["am"]
    assert am.tap.candidate_layers == list(range(am.parts.num_layers))  # layers="all"
    if page == "python.md":
        saved = AugmentedModel.from_pretrained(tmp_path / "checkpoints" / "smollm2-graft")
        for mine, theirs in zip(am.head.state_dict().values(),
                                saved.head.state_dict().values(), strict=True):
            assert torch.equal(mine, theirs)


# Every ```python block of README.md and docs/ (page, how many) and the test files that run
# them as written; a new block fails here until a test runs it.
RUN_BY = {
    "README.md": (1, "tests/docs/test_readme_example.py"),
    "docs/plugins.md": (3, "tests/methods/test_plugins.py",
                        "tests/docs/test_documented_snippets.py"),
    "docs/python.md": (1, "tests/docs/test_documented_snippets.py"),
    "docs/real-models.md": (1, "tests/docs/test_documented_snippets.py"),
    "docs/serving.md": (1, "tests/serving/test_real_server.py"),
    "docs/transformers.md": (2, "tests/docs/test_documented_snippets.py"),
}


def test_every_python_block_is_run():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = {p.relative_to(ROOT).as_posix(): len(re.findall(r"^```python\n", p.read_text(),
                                                            re.M)) for p in pages}
    assert {page: n for page, n in found.items() if n} == {p: v[0] for p, v in RUN_BY.items()}
    for page, (_, *tests) in RUN_BY.items():
        name = page.split("/")[-1]
        assert any(name in (ROOT / t).read_text() for t in tests), (page, tests)
