"""Prompts and chat templates, padding, empty replies (issue 21): a plain prompt becomes a user
turn of the model's chat template by default, a templated one is not wrapped twice, the
checkpoint records the convention its head was trained with, right padding gives the same
tokens as left padding, and a reply that ends at once says so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _generation import chat_tokenizer, small_graft

from toolkit.cli.main import main
from toolkit.core.errors import CheckpointError, ConfigError, DataError
from toolkit.eval.config import EvalConfig
from toolkit.graft import prompting
from toolkit.graft.augmented import AugmentedModel
from toolkit.graft.batching import EMPTY_NOTE, generate_replies
from toolkit.lpo.config import DataConfig
from toolkit.methods.options import DecodingConfig
from toolkit.recipes.schema import GenerateConfig
from toolkit.testing import build_tokenizer

GREEDY = DecodingConfig(max_new_tokens=6)


@pytest.fixture(scope="module")
def chat_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    """The tiny llama with a chat template in its tokenizer."""
    target = tmp_path_factory.mktemp("tiny-chat") / "model"
    shutil.copytree(tiny_llama_dir, target)
    chat_tokenizer().save_pretrained(target)
    return target


def test_a_plain_prompt_becomes_a_user_turn_once():
    tok = chat_tokenizer()
    wrapped = "<s>user\nHi there</s>\n<s>assistant\n"
    assert prompting.markers(tok) == ("<s>", "</s>")
    assert prompting.render(tok, ["Hi there"], chat=True) == [wrapped]
    assert prompting.render(tok, [wrapped], chat=True) == [wrapped]  # already templated
    assert prompting.render(tok, ["Hi there"], chat=False) == ["Hi there"]
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert prompting.render(tok, [conversation], chat=False) == [
        "<s>system\nBe brief.</s>\n<s>user\nHi</s>\n<s>assistant\n"]
    with pytest.raises(DataError, match="no chat template"):
        prompting.render(build_tokenizer(), [conversation], chat=True)


def test_markers_without_special_tokens_are_the_generation_prompt():
    tok = build_tokenizer()
    tok.chat_template = ("{% for m in messages %}User: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}Assistant:{% endif %}")
    assert prompting.markers(tok) == ("Assistant:",)
    assert prompting.render(tok, ["Hi"], chat=True) == ["User: Hi\nAssistant:"]
    assert prompting.render(tok, ["User: Hi\nAssistant:"], chat=True) == ["User: Hi\nAssistant:"]


@pytest.mark.parametrize("setting, trained, template, expected", [
    ("auto", None, True, "chat"), ("auto", None, False, "raw"),
    ("auto", "raw", True, "raw"), ("auto", "chat", True, "chat"),
    ("auto", "chat", False, "raw"), ("on", "raw", True, "chat"), ("off", "chat", True, "raw"),
])
def test_convention(setting, trained, template, expected):
    tok = chat_tokenizer() if template else build_tokenizer()
    assert prompting.convention(tok, setting, trained) == expected


def test_on_without_a_template_and_bad_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="chat_template=on, but the model's tokenizer has no"):
        prompting.convention(build_tokenizer(), "on")
    with pytest.raises(ConfigError, match="choose one of 'auto', 'on', 'off'"):
        prompting.convention(build_tokenizer(), "yes")
    # YAML reads on/off as booleans; they mean on/off
    assert GenerateConfig(chat_template=False).chat_template == "off"
    assert EvalConfig(chat_template="True").chat_template == "on"
    with pytest.raises(ConfigError, match="data.chat_template='maybe' is not allowed"):
        DataConfig(chat_template="maybe")


def bos_adding_chat_tokenizer():
    """The chat tokenizer, adding BOS (`<s>`, one of the template's markers) to every text."""
    from tokenizers.processors import TemplateProcessing

    tok = chat_tokenizer()
    tok._tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    assert tok("a").input_ids[0] == 1
    return tok


def test_encode_left_pads_and_adds_no_second_bos():
    tok = bos_adding_chat_tokenizer()
    enc = prompting.encode(tok, ["a b c d", "<s>a"])
    assert enc["input_ids"][1].tolist().count(1) == 1  # the text's own BOS only
    assert enc["attention_mask"][1].tolist()[0] == 0 and enc["attention_mask"][0].all()


def test_detect_sees_the_template_not_the_bos_the_tokenizer_adds():
    tok = bos_adding_chat_tokenizer()
    raw = [prompting.token_ids(tok, t) for t in ("Hello", "The cat")]
    chat = [prompting.token_ids(tok, t) for t in prompting.render(tok, ["Hello", "Cat"], True)]
    assert prompting.detect(tok, raw) == "raw" and prompting.detect(tok, chat) == "chat"
    assert prompting.detect(tok, raw[:1] + chat[:1]) == "raw"
    assert prompting.detect(build_tokenizer(), chat) == "raw"  # no template: raw


def test_a_tokenizer_is_set_up_for_generation_when_loaded_and_saved(tiny_llama_dir, tmp_path):
    tok = build_tokenizer()
    tok.padding_side, tok.pad_token = "right", None
    model = AugmentedModel.graft(str(tiny_llama_dir), small_graft(), tokenizer=tok)
    assert (model.tokenizer.padding_side, model.tokenizer.pad_token) == ("left", "</s>")
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "tokenizer_config.json").read_text())
    assert saved["padding_side"] == "left" and saved["pad_token"] == "</s>"


@pytest.mark.parametrize("sample", [False, True])
def test_right_padding_gives_the_same_tokens_as_left_padding(tiny_llama_dir, sample):
    model = AugmentedModel.graft(str(tiny_llama_dir), small_graft())
    tok = model.tokenizer
    prompts = ["The quick brown fox jumps over", "Two"]
    left = tok(prompts, return_tensors="pt", padding=True)
    tok.padding_side = "right"
    right = tok(prompts, return_tensors="pt", padding=True)
    tok.padding_side = "left"
    assert right["attention_mask"][1, -1] == 0  # really right padded
    options = dict(max_new_tokens=6, do_sample=sample, seed=3, sled=True, adaptive_temperature=True)
    a = model.generate(left["input_ids"], left["attention_mask"], **options)
    b = model.generate(right["input_ids"], right["attention_mask"], **options)
    assert torch.equal(a, b)
    gap = torch.tensor([[1, 0, 1, 1]])
    with pytest.raises(DataError, match=r"row\(s\) \[0\] has a gap"):
        model.generate(torch.tensor([[5, 6, 7, 8]]), gap)


def test_encode_follows_the_recorded_convention(chat_dir, tmp_path):
    model = AugmentedModel.graft(str(chat_dir), small_graft())
    assert model.prompt_format is None
    assert model.render_prompts("Hi") == ["<s>user\nHi</s>\n<s>assistant\n"]
    assert model.render_prompts("Hi", chat_template="off") == ["Hi"]
    model.prompt_format = "raw"
    model.save_pretrained(tmp_path / "raw")
    loaded = AugmentedModel.from_pretrained(tmp_path / "raw")
    assert loaded.prompt_format == "raw" and loaded.render_prompts(["Hi"]) == ["Hi"]
    assert loaded.render_prompts(["Hi"], chat_template="on") == ["<s>user\nHi</s>\n<s>assistant\n"]
    enc = loaded.encode(["Hi", "a longer prompt here"], chat_template="on")
    assert enc["input_ids"].shape[0] == 2 and enc["attention_mask"][0, 0] == 0


def test_a_malformed_prompt_format_is_refused(chat_dir, tmp_path):
    model = AugmentedModel.graft(str(chat_dir), small_graft())
    model.prompt_format = "chat"
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    config_path = ckpt / "augment_config.json"
    config = json.loads(config_path.read_text())
    assert config["prompt_format"] == "chat"
    config_path.write_text(json.dumps({**config, "prompt_format": "jinja"}))
    with pytest.raises(CheckpointError, match="prompt_format is malformed"):
        AugmentedModel.from_pretrained(ckpt)


def test_training_records_the_convention_of_the_pairs(chat_dir, tmp_path):
    from toolkit.lpo.config import TrainConfig, TrainerConfig
    from toolkit.lpo.train import train_head

    model = AugmentedModel.graft(str(chat_dir), small_graft())
    tok = model.tokenizer
    trainer = TrainerConfig(accelerator="cpu", max_epochs=1, batch_size=4)
    found = {}
    for name, chat in (("chat", True), ("raw", False)):
        texts = prompting.render(tok, ["Hello", "The cat", "One two"], chat)
        pairs = tmp_path / f"{name}.jsonl"
        pairs.write_text("".join(json.dumps({
            "id": str(i), "prompt_ids": prompting.token_ids(tok, t), "chosen_ids": [5, 6],
            "rejected_ids": [7], "chosen_tau": [0, 0], "rejected_tau": [1]}) + "\n"
            for i, t in enumerate(texts)))
        train_head(model, pairs, TrainConfig(), trainer, tmp_path / name)
        found[name] = AugmentedModel.from_pretrained(tmp_path / name).prompt_format
    assert found == {"chat": "chat", "raw": "raw"}


def chat_recipe(tmp_path, ckpt, *lines) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"run_name: t\nwork_dir: {tmp_path}/work\nmodel:\n  path: {ckpt}\n"
                    "decoding:\n  max_new_tokens: 6\n" + "".join(f"{x}\n" for x in lines))
    return path


def test_cli_generate_wraps_plain_prompts_and_writes_why_each_reply_ended(chat_dir, tmp_path,
                                                                          capsys):
    model = AugmentedModel.graft(str(chat_dir), small_graft())
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    prompts = ["Hello there", "<s>user\nThe cat</s>\n<s>assistant\n", "1 2 3"]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    expected = generate_replies(model, model.render_prompts(prompts), GREEDY, 8)
    for setting, replies in (("auto", expected),
                             ("off", generate_replies(model, prompts, GREEDY, 8))):
        out = tmp_path / f"{setting}.jsonl"
        code = main(["generate", str(chat_recipe(tmp_path, ckpt)), f"generate.input={source}",
                     f"generate.output={out}", f"generate.chat_template={setting}"])
        assert code == 0, capsys.readouterr().err
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["prompt"] for r in rows] == prompts
        assert [(r["completion"], r["finish_reason"], r["empty"]) for r in rows] == [
            (x.text, x.finish_reason, x.empty) for x in replies]
        assert {r["finish_reason"] for r in rows} <= {"stop", "length"}


def empty_reply_model(chat_dir, tmp_path) -> tuple[Path, str]:
    """A copy of the tiny chat model whose end token is the first token it would reply to
    'Hello', so that reply is empty."""
    model = AugmentedModel.graft(str(chat_dir), small_graft())
    first = generate_replies(model, model.render_prompts(["Hello"]), GREEDY, 1)[0].ids[0]
    target = tmp_path / "eos-first"
    shutil.copytree(chat_dir, target)
    config = json.loads((target / "generation_config.json").read_text())
    (target / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": first}))
    return target, model.tokenizer.decode([first])


def test_an_empty_reply_says_so(chat_dir, tmp_path, capsys):
    model_dir, _ = empty_reply_model(chat_dir, tmp_path)
    recipe = chat_recipe(tmp_path, model_dir)
    assert main(["generate", str(recipe), "generate.prompts=[Hello]"]) == 0
    assert capsys.readouterr().out.endswith(f"{EMPTY_NOTE}\n")
    assert main(["generate", str(recipe), "generate.prompts=[Hello, 1 2 3]"]) == 0
    printed = capsys.readouterr().out
    assert f"--- 'Hello'\n{EMPTY_NOTE}\n--- '1 2 3'\n" in printed
    out = tmp_path / "out.jsonl"
    assert main(["generate", str(recipe), "generate.prompts=[Hello]",
                 f"generate.output={out}"]) == 0
    row = json.loads(out.read_text())
    assert row == {"prompt": "Hello", "completion": "", "finish_reason": "stop", "empty": True,
                   "prompt_tokens": row["prompt_tokens"], "completion_tokens": 1,
                   "temperature": None}
    assert row["prompt_tokens"] > 1


def test_eval_and_collect_prompts_follow_chat_template(chat_dir, tmp_path):
    from toolkit.eval.generation import prompts_of
    from toolkit.lpo.arith_writing import make_prompts
    from toolkit.lpo.pipeline import task_prompts

    model = AugmentedModel.graft(str(chat_dir), small_graft())
    items = [{"question": "What is 2 + 3?", "gold": 5.0}]
    wrapped = "<s>user\nWhat is 2 + 3?</s>\n<s>assistant\n"
    assert prompts_of(model, "gsm8k", items, EvalConfig(task="gsm8k")) == [wrapped]
    assert prompts_of(model, "gsm8k", items, EvalConfig(task="gsm8k", chat_template="off")) == [
        "Q: What is 2 + 3?\nA:"]
    source = tmp_path / "prompts.jsonl"
    source.write_text(json.dumps({"prompt": "What is 2 + 3?", "answer": "5"}) + "\n")
    for setting, expected in (("auto", wrapped), ("off", "What is 2 + 3?")):
        data = DataConfig(prompts=str(source), chat_template=setting)
        assert [r["prompt"] for r in task_prompts(model, data, 4)[0]] == [expected]
    assert make_prompts(model.tokenizer, 1, "eval")[0]["prompt"].startswith("<s>user\nWhat is")
    assert make_prompts(model.tokenizer, 1, "eval", chat=False)[0]["prompt"].startswith("Q: ")


def test_jsonl_prompts_may_be_conversations(chat_dir, tmp_path, capsys):
    model = AugmentedModel.graft(str(chat_dir), small_graft())
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": conversation}) + "\n")
    out = tmp_path / "out.jsonl"
    code = main(["generate", str(chat_recipe(tmp_path, model.save_pretrained(tmp_path / "c"))),
                 f"generate.input={source}", f"generate.output={out}"])
    assert code == 0, capsys.readouterr().err
    row = json.loads(out.read_text())
    expected = generate_replies(model, model.render_prompts([conversation]), GREEDY, 1)[0]
    assert row["prompt"] == conversation and row["completion"] == expected.text
