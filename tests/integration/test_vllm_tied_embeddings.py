"""A weight push reaches the output layer of a model with tied embeddings (the tiny Qwen2 with
Qwen2.5's 151,936 rows ties them, as Qwen2.5-Math-1.5B and SmolLM2 do). vLLM's CPU engine
computes the lm_head with a copy packed at load time; without a re-pack it kept the old one."""

from __future__ import annotations

import pytest
import torch

from prefix_rft_pl.engines.base import SamplingConfig
from prefix_rft_pl.types import GenerationRequest

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
pytest.importorskip("vllm")


def engine_vs_trainer(engine, model, prompt: list[int]) -> float:
    """Max |engine - trainer| log-prob over 8 greedy tokens."""
    from prefix_rft_pl.prefix import Trajectory, pad_trajectories
    from prefix_rft_pl.update.forward import response_logprobs

    rollout = engine.generate([GenerationRequest(prompt, 8)], SamplingConfig(temperature=0.0))[0]
    tb = pad_trajectories([Trajectory(0, prompt, [], rollout.token_ids, rollout.logprobs, "length")], 0)
    with torch.no_grad():
        logprobs, _ = response_logprobs(model, tb, 1.0, 128, False)
    return (logprobs - tb.engine_logprobs)[tb.mask].abs().max().item()


def test_embedding_update_reaches_the_tied_output_layer(tiny_qwen25_dir):
    from transformers import AutoModelForCausalLM

    from prefix_rft_pl.engines.vllm import VLLMEngine

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen25_dir, dtype=torch.float32)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    engine = VLLMEngine(str(tiny_qwen25_dir), dtype="float32", max_model_len=256, kv_cache_gib=1, enforce_eager=True)
    try:
        prompt = [151644, 872, 198, 16, 10, 16, 30, 151645, 198, 151644, 77091, 198]
        assert engine_vs_trainer(engine, model, prompt) < 1e-4
        with torch.no_grad():  # a large change: the output layer alone moves the log-probs by ~1
            model.model.embed_tokens.weight.mul_(3.0)
        engine.update_weights(model.named_parameters())
        assert engine_vs_trainer(engine, model, prompt) < 1e-4
    finally:
        engine.close()
