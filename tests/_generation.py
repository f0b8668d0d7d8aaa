"""Helpers for the generation tests: a left-padded prompt batch and a cache-free reference loop."""

from __future__ import annotations

from collections.abc import Callable

import torch

from toolkit.graft import AugmentedModel
from toolkit.methods.options import GraftConfig, HeadConfig
from toolkit.testing import build_tokenizer

PROMPTS = [
    "The quick brown fox jumps",
    "What is the capital of France? The capital",
    "Two",
]
# A chat template in the style of SmolLM2's, with the tiny tokenizer's special tokens as markers.
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
PARITY_FAMILIES = ("llama", "gemma", "gemma2", "gemma3_text", "mixtral")


def small_graft(**head) -> GraftConfig:
    """A graft config with a small head, so tests stay fast."""
    return GraftConfig(head=HeadConfig(**{"hidden_size": 16, **head}))


def graft(directory, **head) -> AugmentedModel:
    return AugmentedModel.graft(str(directory), small_graft(**head))


def greedy_texts(model: AugmentedModel, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Each prompt's reply decoded alone by `model.generate` (its saved decoding), as text: the
    reference a batched or sharded run must give."""
    texts = []
    for prompt in prompts:
        ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
        seq = model.generate(ids, max_new_tokens=max_new_tokens)
        texts.append(model.tokenizer.decode(seq[0, ids.shape[1]:], skip_special_tokens=True))
    return texts


def prompt_batch(tokenizer, prompts=PROMPTS) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), left padded; rows have different lengths."""
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    assert tokenizer.padding_side == "left"
    assert len(set(enc["attention_mask"].sum(1).tolist())) == len(prompts)
    return enc["input_ids"], enc["attention_mask"]


def early_logits(model, hidden_states, layers: list[int], norm=None) -> torch.Tensor:
    """(B, N, V) lm_head(hidden_states[l][:, -1]) for each layer, through `norm` first when
    given (early_exit_norm), with the final soft-cap."""
    rows = torch.stack([hidden_states[layer][:, -1] for layer in layers], dim=1)
    rows = norm(rows) if norm is not None else rows
    logits = model.get_output_embeddings()(rows).float()
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


Pick = Callable[[torch.Tensor, tuple], torch.Tensor]


@torch.no_grad()
def reference_generate(model, input_ids, attention_mask, steps: int, pick: Pick) -> torch.Tensor:
    """Generate `steps` tokens without a KV cache: every step runs the full model with
    output_hidden_states on the whole sequence; `pick(final_logits (B,V), hidden_states)`
    returns the next tokens. Rows after eos get pad tokens, as in transformers."""
    config = model.generation_config
    ids, mask = input_ids.clone(), attention_mask.clone()
    unfinished = torch.ones(ids.shape[0], dtype=torch.bool)
    for _ in range(steps):
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        out = model(ids, attention_mask=mask, position_ids=positions, output_hidden_states=True,
                    use_cache=False)
        tokens = pick(out.logits[:, -1].float(), out.hidden_states)
        tokens = torch.where(unfinished, tokens, torch.full_like(tokens, config.pad_token_id))
        unfinished &= tokens != config.eos_token_id
        ids = torch.cat([ids, tokens[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if not unfinished.any():
            break
    return ids


def chat_tokenizer():
    """The offline tiny tokenizer with `TEMPLATE` as its chat template."""
    tok = build_tokenizer()
    tok.chat_template = TEMPLATE
    return tok
