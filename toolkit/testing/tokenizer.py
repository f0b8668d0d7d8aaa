"""An offline byte-level BPE tokenizer trained on a small built-in corpus (no downloads)."""

from __future__ import annotations

from functools import lru_cache

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

VOCAB_SIZE = 300
PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, BOS, EOS)  # ids 0, 1, 2

CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Two plus two equals four, and three times three equals nine.",
    "A language model predicts the next token from the tokens before it.",
    "The early layers of a network see words; the later layers see meaning.",
    "Question: how many legs does a spider have? Answer: eight.",
    "She sells sea shells by the sea shore on a sunny summer morning.",
    "Temperature controls how random the sampled reply will be.",
    "If it rains tomorrow, we will stay at home and read a book.",
    "The river runs past the old mill and into the green valley.",
)


@lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(CORPUS) * 4, trainer=trainer)
    return tok.to_str()


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh fast tokenizer: vocab 300, `<pad>`=0, `<s>`=1, `</s>`=2, left padding.

    Training is deterministic and cached, so every call returns an identical tokenizer.
    """
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer_json()),
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        padding_side="left",
    )
