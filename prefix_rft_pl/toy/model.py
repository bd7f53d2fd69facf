"""A tiny Qwen2 (or Llama) causal LM, written with `save_pretrained` so that it is read back
through exactly the `from_pretrained` path a hub id takes. Llama is the architecture of the
LLaMA-3.1 config (tests shrink the paper configs to these).

head_dim is 32: vLLM's CPU attention backend rejects 16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefix_rft_pl.toy.tokenizer import build_byte_tokenizer


def save_tiny_model(
    path: str | Path,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    max_position_embeddings: int = 512,
    seed: int = 0,
    architecture: Literal["qwen2", "llama"] = "qwen2",
) -> Path:
    """Write a randomly initialised tiny Qwen2 (or Llama) model and its byte tokenizer to `path`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    classes = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
    config_cls, model_cls = classes[architecture]
    path = Path(path)
    tokenizer = build_byte_tokenizer()
    config = config_cls(
        vocab_size=288,  # >= len(tokenizer) (259), a multiple of 32
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path
