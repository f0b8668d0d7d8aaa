"""Hostile chat templates stop at a limit with one line naming the template's source and the
limit, fast and without the memory they ask for; templates that use transformers' globals,
filters and extensions render exactly as transformers renders them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _generation import chat_tokenizer

from toolkit.cli.main import main
from toolkit.core.errors import DataError
from toolkit.graft import prompting, template_limits

NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
FIX = "; fix the template, or set chat_template=off to use the prompts as written"
SMOLLM2 = Path.home() / ".cache/model-surgery/smollm2-135m-instruct/chat_template.jinja"
GEMMA_LIKE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] "
    "+ '\n\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first = '' %}"
    "{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first if loop.first else '') }}"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
FEATURES = (
    "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
    "{% generation %}{{ m | tojson }}{% endgeneration %}{% if loop.last %}{% break %}{% endif %}"
    "{% endfor %}{{ dict(a=ns.n) | tojson }}{{ (strftime_now('%Y') | length) }}{{ '%-5s|' % 'x' }}"
    "{{ '{:>3}'.format(7) }}{{ ', '.join(['a', 'b']) }}{{ 'ab' | replace('a', 'c') }}"
)


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(template_limits, "MAX_SECONDS", 0.5)


def _refusal(template: str) -> tuple[str, float]:
    tok = chat_tokenizer()
    tok.chat_template = template
    started = time.perf_counter()
    with pytest.raises(DataError) as caught:
        prompting.render(tok, ["hello"], chat=True)
    return str(caught.value), time.perf_counter() - started


@pytest.mark.parametrize("template, what", [
    (NESTED, "ran past the 0.5 s allowed for one prompt"),
    ("{{ 'a' * 4000000000 }}", "would make a value of 4000000000 items with *, more than the "
                               "4000000 allowed"),
    ("{{ 'a'.ljust(4000000000) }}", "passed the number 4000000000 to ljust, more than the "
                                    "4000000 allowed"),
    ("{{ 'a' | center(4000000000) }}", "passed the number 4000000000 to center, more than the "
                                       "4000000 allowed"),
    ("{{ '{:>4000000000}'.format('a') }}", "would make a text of more than 4000000 characters "
                                           "with format"),
    ("{{ '%4000000000s' | format('a') }}", "would make a text of more than 4000000 characters "
                                           "with format"),
    ("{{ ('x' * 1000000) | replace('', 'yyyy') }}", "would make a text of more than 4000000 "
                                                    "characters with replace"),
    ("{{ 9 ** 99999999 }}", "raises a number to the power 99999999, past the 64 allowed"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}", "made a value of 4194304 items, more than the 4000000 allowed"),
    ("{% for i in range(5) %}{{ 'x' * 1000000 }}{% endfor %}", "wrote more than the 4000000 "
                                                               "characters allowed"),
], ids=["nested-range", "times", "ljust", "center", "format", "format-filter", "replace", "power",
        "doubling", "output"])
def test_hostile_templates_stop_at_a_limit(fast, template, what):
    message, seconds = _refusal(template)
    assert message == f"the tokenizer's chat template {what}{FIX}"
    assert seconds < 3.0


def test_memory_growth_stops_the_render(monkeypatch):
    monkeypatch.setattr(template_limits, "MAX_GROWTH", 64 * 2**20)
    template = ("{% set ns = namespace(parts=[]) %}{% for i in range(100000) %}"
                "{% set ns.parts = ns.parts + ['x' * 4000000] %}{% endfor %}")
    message, seconds = _refusal(template)
    assert message == f"the tokenizer's chat template grew the process by more than 64 MiB{FIX}"
    assert seconds < 3.0


@pytest.mark.parametrize("template", [GEMMA_LIKE, FEATURES, "SMOLLM2"],
                         ids=["gemma-like", "features", "smollm2"])
def test_real_templates_render_as_transformers_renders_them(template):
    if template == "SMOLLM2":
        if not SMOLLM2.is_file():
            pytest.skip("the smollm2-135m-instruct preset is not prepared")
        template = SMOLLM2.read_text()
    tok = chat_tokenizer()
    tok.chat_template = template
    messages = [{"role": "user", "content": "Hi there"}]
    expected = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompting.render(tok, [messages, "Hi there"], chat=True) == [expected, expected]


def test_a_model_directory_template_through_the_cli(fast, tiny_llama_dir, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    for path in tiny_llama_dir.iterdir():
        (model / path.name).write_bytes(path.read_bytes())
    (model / "chat_template.jinja").write_text(NESTED)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp_path}/out\nmodel:\n  path: {model}\n")
    code = main(["generate", str(recipe), "generate.prompts=[hello]", "generate.chat_template=on"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip().splitlines()[-1] == (f"error: the chat template of {model} ran past the "
                                            f"0.5 s allowed for one prompt{FIX}")
