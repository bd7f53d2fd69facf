"""Prompt + budget against the model's context, before any generation (trainer side; the
harness side is in tests/integration/test_eval_real.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from prefix_rft_pl.context import PromptTooLongError, check_requests, model_context, over_context
from prefix_rft_pl.engines.base import LiveWeights
from prefix_rft_pl.types import GenerationRequest, PromptDemoBatch, PromptItem
from tests.helpers import build_module


def test_model_context_is_the_smaller_of_engine_and_model_limits():
    config = SimpleNamespace(max_position_embeddings=512)
    assert model_context(config) == 512
    assert model_context(config, max_model_len=256) == 256
    assert model_context(config, max_model_len=4096) == 512
    assert model_context(SimpleNamespace(), max_model_len=300) == 300
    assert model_context(SimpleNamespace()) is None


def test_over_context_counts_prompt_plus_budget():
    # 400 + 112 = 512 fits exactly; 401 + 112 does not
    assert over_context([400, 401, 10], budget=112, context=512) == [1]
    assert over_context([10**6], budget=1, context=None) == []


def test_check_requests_names_each_row_once_with_its_prompt_length():
    fits = GenerationRequest([0] * 400, 112)
    long_ordinary = GenerationRequest([0] * 450, 112, num_samples=7)
    long_hybrid = GenerationRequest([0] * 450, 100, prefix_ids=[0] * 12)     # 450 + 12 + 100
    check_requests([fits], ["a"], 512)
    with pytest.raises(PromptTooLongError) as err:
        check_requests([fits, long_ordinary, long_hybrid], ["a", "b", "b"], 512)
    message = str(err.value)
    assert "1 prompt(s) do not fit" in message and "b (450 tokens)" in message and "a (" not in message
    assert "budget 112 > context 512" in message and "max_prompt_tokens <= 400" in message


class MustNotGenerate(LiveWeights):
    def generate(self, requests, sampling):
        raise AssertionError("the engine was called with a prompt longer than the context")


def test_trainer_stops_before_generation_naming_the_row(tiny_model_dir):
    module = build_module(str(tiny_model_dir), {"rollout": {"group_size": 2, "max_response_tokens": 64}})
    module.configure_model()           # the toy model's context: 512 positions
    module.engine = MustNotGenerate()
    items = [PromptItem("train.parquet:3", [5] * 100, [[6] * 10], ["1"]),
             PromptItem("train.parquet:7", [5] * 460, [[6] * 10], ["1"])]
    with pytest.raises(PromptTooLongError, match=r"train\.parquet:7 \(460 tokens\)"):
        module._rollout(PromptDemoBatch(items))


def test_validation_stops_before_generation_naming_the_row(tiny_model_dir):
    module = build_module(str(tiny_model_dir), {"rollout": {"group_size": 2, "max_response_tokens": 64}})
    module.configure_model()
    items = [PromptItem("val.jsonl:0", [5] * 500, [], ["1"])]
    with pytest.raises(PromptTooLongError, match=r"^validation 1 prompt\(s\).*val\.jsonl:0 \(500 tokens\)"):
        module.validation_step(PromptDemoBatch(items), 0)
