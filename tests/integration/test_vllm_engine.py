"""VLLMEngine on the real vLLM CPU engine against the HF model in float32.

One engine per module (start-up dominates). Every test first pushes the weights it
compares against, so the tests do not depend on their order.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from prefix_rft_pl.engines.base import SamplingConfig
from prefix_rft_pl.engines.checks import StaleWeightsError, check_engine_weights
from prefix_rft_pl.types import GenerationRequest

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
pytest.importorskip("vllm")

TOL = 1e-4  # vLLM vs HF float32 log-probs


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from prefix_rft_pl.engines.vllm import VLLMEngine

    eng = VLLMEngine(str(tiny_model_dir), dtype="float32", seed=0, max_model_len=512, kv_cache_gib=1,
                     enforce_eager=True)
    yield eng
    eng.close()


def push(engine, model) -> None:
    from prefix_rft_pl.weight_sync import stream_full_tensors

    engine.update_weights(stream_full_tensors(model, engine.dtype))


@torch.no_grad()
def hf_logprobs(model, context: list[int], generated: list[int], temperature: float = 1.0) -> torch.Tensor:
    """[T] log-probs of `generated` after `context` under log_softmax(logits / temperature)."""
    ids = torch.tensor([context + generated])
    logits = model(ids).logits[0, len(context) - 1:-1].float() / temperature     # [T, V]
    return logits.log_softmax(-1).gather(-1, torch.tensor(generated)[:, None])[:, 0]


@torch.no_grad()
def hf_greedy(model, context: list[int], max_new_tokens: int, eos_id: int) -> list[int]:
    out = model.generate(torch.tensor([context]), max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=eos_id, pad_token_id=eos_id)
    return out[0, len(context):].tolist()


def assert_logprobs_match(model, requests, rollouts, temperature: float = 1.0) -> None:
    samples = [r for r in requests for _ in range(r.num_samples)]
    assert len(rollouts) == len(samples)
    for request, rollout in zip(samples, rollouts):
        assert len(rollout.logprobs) == len(rollout.token_ids) > 0
        expected = hf_logprobs(model, request.prompt_ids + request.prefix_ids, rollout.token_ids, temperature)
        torch.testing.assert_close(torch.tensor(rollout.logprobs), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_match_hf_and_keep_request_order(engine, hf_model, temperature):
    push(engine, hf_model)
    # distinct budgets identify each request's rollouts: samples of a request are contiguous
    requests = [GenerationRequest([10, 20, 30], 9, num_samples=3), GenerationRequest([40, 50], 5, num_samples=2),
                GenerationRequest([60], 7)]
    rollouts = engine.generate(requests, SamplingConfig(temperature=temperature))
    eos = engine.llm.llm_engine.model_config.hf_config.eos_token_id
    budgets = [r.max_new_tokens for r in requests for _ in range(r.num_samples)]
    for rollout, budget in zip(rollouts, budgets):
        stopped = rollout.finish_reason == "stop"
        assert len(rollout.token_ids) == budget or (stopped and rollout.token_ids[-1] == eos)
    assert_logprobs_match(hf_model, requests, rollouts, temperature)


def test_zero_budget_requests_give_empty_rollouts(engine):
    requests = [GenerationRequest([1, 2], 0, num_samples=2), GenerationRequest([3], 2)]
    rollouts = engine.generate(requests, SamplingConfig())
    assert [len(r.token_ids) for r in rollouts] == [0, 0, 2]


def test_hybrid_request_continues_the_prefix_ids_within_the_reduced_budget(engine, hf_model):
    push(engine, hf_model)
    prompt, prefix, budget = [10, 20, 30], [70, 71, 72, 73, 74], 12
    hybrid = GenerationRequest(prompt, budget - len(prefix), prefix_ids=prefix, num_samples=2)
    rollouts = engine.greedy([hybrid])
    eos = engine.llm.llm_engine.model_config.hf_config.eos_token_id
    expected = hf_greedy(hf_model, prompt + prefix, budget - len(prefix), eos)
    assert [r.token_ids for r in rollouts] == [expected, expected]
    assert all(len(r.token_ids) <= budget - len(prefix) for r in rollouts)
    assert_logprobs_match(hf_model, [hybrid], rollouts)


def sgd_step(model, lr: float = 0.5):
    """One SGD step on a next-token loss over a fixed sequence: a trained copy of `model`."""
    trained = copy.deepcopy(model).train()
    ids = torch.tensor([[10, 20, 30, 40, 50, 60, 70, 80]])
    trained(ids, labels=ids).loss.backward()
    with torch.no_grad():
        for p in trained.parameters():
            p -= lr * p.grad
    return trained.eval()


def test_update_weights_after_a_training_step_matches_hf(engine, hf_model):
    # a prompt longer than a KV block, run before the update: its cached prefill is stale after it
    prompt = [(7 * i) % 250 + 3 for i in range(300)]  # CPU KV blocks hold 128 tokens
    push(engine, hf_model)
    engine.greedy([GenerationRequest(prompt, 4)])
    trained = sgd_step(hf_model)
    push(engine, trained)
    eos = engine.llm.llm_engine.model_config.hf_config.eos_token_id
    greedy = engine.greedy([GenerationRequest(prompt, 10)])[0]
    assert greedy.token_ids == hf_greedy(trained, prompt, 10, eos)
    assert greedy.token_ids != hf_greedy(hf_model, prompt, 10, eos)  # the step changed the model
    assert_logprobs_match(trained, [GenerationRequest(prompt, 10)], [greedy])
    requests = [GenerationRequest(prompt, 10, num_samples=4)]
    assert_logprobs_match(trained, requests, engine.generate(requests, SamplingConfig()))


def test_skipped_sync_trips_the_weight_check_and_a_sync_clears_it(engine, hf_model):
    push(engine, hf_model)
    trained = sgd_step(hf_model)  # the trainer moved on; the engine was not told
    prompt = [GenerationRequest([10, 20, 30], 4)]
    engine.generate(prompt, SamplingConfig())  # records the fingerprint of the weights it sampled with
    sampled = engine.pop_weights_fingerprint()
    assert engine.pop_weights_fingerprint() is None  # once per generate
    with pytest.raises(StaleWeightsError, match=r"at step 5 \(rank 0: model\.embed_tokens\.weight\)"):
        check_engine_weights(trained, sampled, engine.dtype, step=5)
    assert check_engine_weights(hf_model, sampled, engine.dtype, step=5) == 17  # what it holds
    push(engine, trained)
    engine.generate(prompt, SamplingConfig())
    assert check_engine_weights(trained, engine.pop_weights_fingerprint(), engine.dtype, step=5) == 17


def test_weight_sync_callback_pushes_and_logs(engine, hf_model):
    from prefix_rft_pl.weight_sync import VLLMWeightSync

    push(engine, hf_model)
    trained = sgd_step(hf_model)
    logged = {}
    module = SimpleNamespace(policy=trained, engine=engine, log=lambda name, value, **kw: logged.update({name: value}))
    VLLMWeightSync().on_train_batch_end(None, module, None, None, 0)
    assert logged["rollout/weight_sync_s"] > 0
    prompt = [10, 20, 30]
    rollouts = engine.generate([GenerationRequest(prompt, 8, num_samples=2)], SamplingConfig())
    assert_logprobs_match(trained, [GenerationRequest(prompt, 8, num_samples=2)], rollouts)
