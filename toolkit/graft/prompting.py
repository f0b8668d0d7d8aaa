"""Prompt conventions: a model's chat template or the raw text, and left-padded encoding.

A chat model's head is trained on prompts in one convention and picks its temperatures for
text like that: "chat" wraps a plain prompt as a user turn with the template's generation
prompt (`add_generation_prompt=True`), "raw" feeds the text as written. `convention` resolves
a `chat_template` setting (auto / on / off) against the tokenizer and the convention a
checkpoint's head was trained with; `render` applies it, leaving prompts that already hold
the template's markers (or are given as a list of messages) as they are; `encode` tokenizes
a batch, left padded, without a second BOS when the template already wrote one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jinja2 import TemplateError
from transformers import BatchEncoding

from toolkit.core.errors import ConfigError, DataError
from toolkit.graft import template_limits
from toolkit.methods.options import chat_template_setting

CHAT, RAW = "chat", "raw"
CONVENTIONS = (CHAT, RAW)
_PROBE = "\u2063probe\u2063"  # text no template writes, to find what the template adds


def has_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def convention(tokenizer: Any, setting: str = "auto", trained: str | None = None,
               key: str = "chat_template") -> str:
    """"chat" or "raw" for a `chat_template` setting.

    Args:
        tokenizer: the model's tokenizer (None: raw).
        setting: "on" (the template; a tokenizer without one is refused), "off" (raw text) or
            "auto" (the convention the head was trained with when known, else the template
            when the tokenizer has one).
        trained: the checkpoint's recorded convention, or None.
        key: the option's name in error messages.
    """
    setting = chat_template_setting(key, setting)
    if setting == "off":
        return RAW
    if setting == "on" and not has_template(tokenizer):
        raise ConfigError(f"{key}=on, but the model's tokenizer has no chat template; set "
                          f"{key}=off (or auto) to use the prompts as written")
    if setting == "auto" and trained in CONVENTIONS and (trained == RAW or has_template(tokenizer)):
        return trained
    return CHAT if has_template(tokenizer) else RAW


def markers(tokenizer: Any) -> tuple[str, ...]:
    """Text the template writes around a user turn that plain prompts do not hold: its special
    tokens (e.g. `<|im_start|>`), else the generation prompt it appends (e.g. `Assistant:`)."""
    if not has_template(tokenizer):
        return ()
    text = _wrap(tokenizer, [{"role": "user", "content": _PROBE}])
    special = tuple(t for t in getattr(tokenizer, "all_special_tokens", ()) if t and t in text)
    if special:
        return special
    tail = text.split(_PROBE, 1)[-1].strip()
    return (tail,) if tail else ()


def is_templated(tokenizer: Any, text: str, found: Sequence[str] | None = None) -> bool:
    """Whether `text` already holds the template's markers (`found`: precomputed `markers`)."""
    found = markers(tokenizer) if found is None else found
    return any(m in text for m in found)


def render(tokenizer: Any, prompts: Sequence[Any], chat: bool) -> list[str]:
    """The text of every prompt in a convention.

    Args:
        tokenizer: the model's tokenizer.
        prompts: strings, or conversations (lists of {"role", "content"} messages), which
            always go through the template.
        chat: wrap plain strings as a user turn with the generation prompt (strings that
            already hold the template's markers are kept as they are).
    """
    found = markers(tokenizer) if chat else ()
    out = []
    for number, prompt in enumerate(prompts, start=1):
        if isinstance(prompt, (list, tuple)):
            if not has_template(tokenizer):
                raise DataError(f"prompt {number} is a list of messages, but the model's "
                                "tokenizer has no chat template; give it as text")
            out.append(_wrap(tokenizer, list(prompt)))
        elif not isinstance(prompt, str):
            raise DataError(f"prompt {number} is a {type(prompt).__name__}; give text or a "
                            "list of {'role', 'content'} messages")
        elif chat and not is_templated(tokenizer, prompt, found):
            out.append(_wrap(tokenizer, [{"role": "user", "content": prompt}]))
        else:
            out.append(prompt)
    return out


def _wrap(tokenizer: Any, messages: list) -> str:
    """The template's text for `messages`, rendered within `template_limits`' limits."""
    variables = {**getattr(tokenizer, "special_tokens_map", {}), "messages": messages,
                 "tools": None, "documents": None, "add_generation_prompt": True}
    try:
        template = (tokenizer.get_chat_template() if hasattr(tokenizer, "get_chat_template")
                    else tokenizer.chat_template)
        return template_limits.bounded(lambda: tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True), template, variables)
    except template_limits.TemplateLimit as err:
        name = getattr(tokenizer, "name_or_path", "")
        source = f"the chat template of {name}" if name else "the tokenizer's chat template"
        raise DataError(f"{source} {err}; fix the template, or set chat_template=off to use "
                        "the prompts as written") from err
    except (TemplateError, ValueError, TypeError, KeyError) as err:
        raise DataError(f"the chat template refused the prompt ({err}); give messages as "
                        "[{'role': 'user', 'content': '...'}, ...]") from err


def encode(tokenizer: Any, texts: Sequence[str]) -> Any:
    """A left-padded `BatchEncoding` (input_ids, attention_mask as tensors) of prompt texts;
    a text that already starts with the BOS token gets no second one."""
    bos = getattr(tokenizer, "bos_token", None)
    input_ids, attention_mask = left_pad([token_ids(tokenizer, t, bos) for t in texts],
                                         padding_id(tokenizer))
    return BatchEncoding({"input_ids": input_ids, "attention_mask": attention_mask})


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, longest), for prompts given as token ids."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def padding_id(tokenizer: Any) -> int:
    """The id that pads prompts: the pad token, else the end token."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise DataError("the tokenizer has neither a pad nor an end token to pad prompts with; "
                    "set tokenizer.pad_token")


def token_ids(tokenizer: Any, text: str, bos: str | None = None) -> list[int]:
    """The ids of one prompt text, without a second BOS when the text starts with it."""
    bos = getattr(tokenizer, "bos_token", None) if bos is None else bos
    special = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def set_up_for_generation(tokenizer: Any) -> Any:
    """Left padding, and the end token as pad token when the tokenizer has none (what a
    decoder-only model needs to generate a batch); returns the tokenizer, changed in place."""
    if tokenizer is not None:
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prompt_ids(inputs: Any, input_ids: Any) -> torch.Tensor:
    """The prompt ids of a generate() call, given as transformers takes them: positionally
    (`inputs`) or as `input_ids=`, not both; ConfigError when neither is a (B, T) tensor."""
    if inputs is not None and input_ids is not None:
        raise ConfigError("the prompt ids are given twice (inputs and input_ids); pass one")
    ids = inputs if input_ids is None else input_ids
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise ConfigError(
            f"generate() needs the prompt ids as a (batch, tokens) tensor, not {type(ids).__name__}"
            "; am.generate(**am.encode(prompts)) gives them"
        )
    return ids


def left_aligned(input_ids: torch.Tensor,
                 attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded on the right (or both sides) moved to the left padding that generation
    needs, so they give the same tokens as left padding; left-padded rows are unchanged and
    a mask with a gap inside the prompt is refused."""
    mask = attention_mask.ne(0).long()
    width = mask.shape[1]
    ones = mask.sum(1)
    span = width - mask.flip(1).argmax(1) - mask.argmax(1)
    gapped = ones.gt(0) & span.ne(ones)
    if gapped.any():
        rows = gapped.nonzero().flatten().tolist()
        raise DataError(
            f"the attention mask of prompt row(s) {rows} has a gap inside the prompt; give "
            "each row's tokens in one piece, padded on the left (tokenizer.padding_side='left')"
        )
    trailing = (mask.flip(1).cumsum(1) == 0).sum(1)
    if not trailing.any():
        return input_ids, attention_mask
    index = (torch.arange(width, device=input_ids.device) - trailing[:, None]) % width
    return input_ids.gather(1, index), attention_mask.gather(1, index)


def check_rows(attention_mask: torch.Tensor) -> None:
    """Every row needs at least one prompt token (an empty prompt would decode from padding)."""
    empty = (attention_mask.sum(-1) == 0).nonzero().flatten().tolist()
    if attention_mask.shape[-1] == 0 or empty:
        raise DataError(
            f"prompt row(s) {empty or 'all'} of the batch are empty (no tokens); give every "
            "prompt some text"
        )


def check_room(width: int, max_new_tokens: int, limit: int | None) -> None:
    """A prompt batch `width` tokens wide leaves max_new_tokens within the model's `limit`
    positions (None: no limit known)."""
    if limit and width + max_new_tokens > limit:
        raise DataError(
            f"the prompt batch is {width} tokens wide; with max_new_tokens="
            f"{max_new_tokens} that passes the model's {limit} positions: shorten the "
            "prompts or lower max_new_tokens"
        )


def as_batch(prompts: Any) -> list[Any]:
    """A batch of prompts: a string or one conversation (a list of message dicts) becomes a
    batch of one."""
    if isinstance(prompts, str) or (isinstance(prompts, (list, tuple)) and prompts
                                    and isinstance(prompts[0], dict)):
        return [prompts]
    return list(prompts)


def detect(tokenizer: Any, prompt_ids: Sequence[Sequence[int]]) -> str:
    """The convention a set of prompts (token ids) was written in: "chat" when the tokenizer
    has a template and every prompt holds its markers (not counting the BOS the tokenizer adds
    to any text), else "raw"."""
    found = markers(tokenizer)
    if not found or not prompt_ids:
        return RAW
    added = list(tokenizer("")["input_ids"])
    texts = (tokenizer.decode(list(ids)[len(added):] if list(ids)[:len(added)] == added else ids)
             for ids in prompt_ids)
    return CHAT if all(is_templated(tokenizer, t, found) for t in texts) else RAW
