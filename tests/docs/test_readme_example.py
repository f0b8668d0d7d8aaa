"""The README's Python example, run as written (the checkpoint path swapped for a test one): it
prints one reply per prompt and the head's temperatures, with no warning, and its batched
output equals the output of the same code run one prompt at a time. On the tiny model with a
chat template here; on the real SmolLM2 model under the `real` marker."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import pytest
from _generation import chat_tokenizer, small_graft

from toolkit.graft.augmented import AugmentedModel

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = '"checkpoints/quickstart"'
LICENCE_LINE = re.compile(r"model preset [\w.-]+: licence .+")


def example() -> str:
    """The first Python block of the README's "## Python" section."""
    section = (ROOT / "README.md").read_text().split("\n## Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run(code: str, checkpoint: Path, capfd, prompts: list[str] | None = None) -> list[str]:
    """The example's printed lines (with `prompts` in place of its own), after checking that it
    wrote nothing to stderr but transformers' weight-loading progress bar and a model preset's
    licence line (said whenever a checkpoint on a preset base loads), and raised no warning."""
    code = code.replace(CHECKPOINT, repr(str(checkpoint)))
    if prompts is not None:
        code = re.sub(r"^prompts = .*$", f"prompts = {prompts!r}", code, flags=re.M)
    logged = _Collect()
    library = logging.getLogger("transformers")  # it does not propagate to the root logger
    library.addHandler(logged)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exec(compile(code, "README.md", "exec"), {})
    finally:
        library.removeHandler(logged)
    out, err = capfd.readouterr()
    noise = [line for line in re.split(r"[\r\n]+", err)
             if line.strip() and not line.startswith("Loading weights")
             and not LICENCE_LINE.fullmatch(line)]
    noise += [str(w.message) for w in caught] + logged.messages
    assert not noise, noise
    return out.splitlines()


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_batched_equals_single(checkpoint: Path, capfd) -> list[str]:
    code = example()
    assert CHECKPOINT in code
    prompts = eval(re.search(r"^prompts = (\[.*\])$", code, re.M).group(1))
    batched = run(code, checkpoint, capfd)
    assert len(batched) == len(prompts) + 1 and all(eval(r) for r in batched[:-1])
    temps = [float(t) for t in re.findall(r"[\d.]+", batched[-1])]
    assert len(temps) == len(prompts)
    for i, prompt in enumerate(prompts):
        single = run(code, checkpoint, capfd, [prompt])
        assert single[0] == batched[i]
        assert [float(t) for t in re.findall(r"[\d.]+", single[1])] == [temps[i]]
    return batched


def test_the_readme_example_on_the_tiny_model(tiny_llama_dir, tmp_path, capfd):
    tok = chat_tokenizer()
    tok.padding_side = "right"  # as many tokenizers ship; the example must not depend on it
    model = AugmentedModel.graft(str(tiny_llama_dir), small_graft(), tokenizer=tok)
    check_batched_equals_single(model.save_pretrained(tmp_path / "ckpt"), capfd)


@pytest.mark.real
def test_the_readme_example_on_the_real_model(real_model_dir, tmp_path, capfd):
    model = AugmentedModel.graft(str(real_model_dir), small_graft(temperatures=[0.25, 1.0]))
    replies = check_batched_equals_single(model.save_pretrained(tmp_path / "ckpt"), capfd)
    assert all(len(eval(r).split()) >= 2 for r in replies[:-1])  # real replies, not blank
