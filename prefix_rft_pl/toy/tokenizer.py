"""A byte-level tokenizer with no merges (one token per byte), saved in Hugging Face format.

It is built like Qwen2's byte-level BPE, only without merges, because transformers picks
the tokenizer class from the model's architecture: a Qwen2 `config.json` makes
`AutoTokenizer` load `Qwen2Tokenizer`, which rebuilds its pipeline from vocab and merges.
A plain character vocabulary loses every space on that path; a byte-level vocabulary
round-trips (tests/unit/test_toy.py checks it through `AutoTokenizer`).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_byte_tokenizer():
    """Return a `PreTrainedTokenizerFast` with one token per byte plus three special tokens."""
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    return tokenizer
