"""Conversion of vLLM outputs to Rollouts, on stand-in objects (no vLLM needed)."""

from types import SimpleNamespace

from prefix_rft_pl.engines.vllm import _to_rollout


def completion(token_ids, logprobs, finish_reason):
    return SimpleNamespace(index=0, token_ids=token_ids, logprobs=logprobs, finish_reason=finish_reason)


def test_flat_logprobs_give_one_logprob_per_token():
    flat = SimpleNamespace(start_indices=[0, 1, 2], logprobs=[-0.5, -1.5, -0.25])  # FlatLogprobs, logprobs=0
    rollout = _to_rollout(completion((7, 8, 0), flat, "stop"))
    assert rollout.token_ids == [7, 8, 0] and rollout.logprobs == [-0.5, -1.5, -0.25]
    assert rollout.finish_reason == "stop"


def test_per_position_logprobs_pick_the_sampled_token():
    # per-position dicts may also hold the top-1 token when it was not the sampled one
    positions = [{7: SimpleNamespace(logprob=-0.5), 9: SimpleNamespace(logprob=-0.1)},
                 {8: SimpleNamespace(logprob=-1.5)}]
    rollout = _to_rollout(completion([7, 8], positions, "length"))
    assert rollout.logprobs == [-0.5, -1.5] and rollout.finish_reason == "length"


def test_aborted_samples_count_as_cut_by_the_budget():
    flat = SimpleNamespace(start_indices=[0], logprobs=[-0.5])
    assert _to_rollout(completion([7], flat, "abort")).finish_reason == "length"
