"""The HF engine stops on the tokens vLLM stops on: the tokenizer's EOS and the generation
config's EOS ids (Qwen2.5-Instruct's <|im_end|> is only in the latter)."""

from __future__ import annotations

import torch

from prefix_rft_pl.engines.hf import HFEngine, stop_token_ids


def test_stop_tokens_are_tokenizer_eos_and_generation_config_eos(tiny_qwen25_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen25_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen25_dir)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.eos_token_id = [im_end, tokenizer.eos_token_id]   # as Qwen2.5-Instruct ships it
    assert stop_token_ids(tokenizer, model.generation_config) == [tokenizer.eos_token_id, im_end]
    engine = HFEngine(model, tokenizer)
    rollout = engine._cut(torch.tensor([5, 6, im_end, 7]), torch.zeros(4), budget=4)
    assert rollout.token_ids == [5, 6, im_end] and rollout.finish_reason == "stop"
