"""Loss math against hand-worked numbers (tight tolerances)."""

import math

import pytest
import torch

from prefix_rft_pl.config import Clip, Prefix
from prefix_rft_pl.losses import (
    aggregate_constant,
    aggregate_seq_mean_token_mean,
    aggregate_token_mean,
    clipped_surrogate,
    group_advantages,
    sft_loss,
    shaped_surrogate,
    token_losses,
)
from prefix_rft_pl.variants import PPOPrefix, SFTPrefix, ShapedPrefix


def test_group_advantages_dr_grpo_subtracts_the_group_mean_only():
    # group 1: mean 0.25 -> [0.75, -0.25, -0.25, -0.25]; group 2: all equal -> 0
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    expected = torch.tensor([[0.75, -0.25, -0.25, -0.25], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(group_advantages(rewards), expected, rtol=0, atol=1e-7)


def test_group_advantages_baseline_from_ordinary_rollouts():
    # hybrid (last) succeeded, ordinary: [1, 0, 0] -> baseline 1/3
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    baseline = torch.tensor([[True, True, True, False]])
    expected = torch.tensor([[2 / 3, -1 / 3, -1 / 3, 2 / 3]])
    torch.testing.assert_close(group_advantages(rewards, baseline), expected, rtol=0, atol=1e-6)


def test_group_advantages_std_scaling():
    # mean 0.5, unbiased std of [1, 0] = sqrt(0.5); A = +-0.5 / sqrt(0.5) = +-sqrt(0.5)
    out = group_advantages(torch.tensor([[1.0, 0.0]]), scale_by_std=True, eps=0.0)
    torch.testing.assert_close(out, torch.tensor([[math.sqrt(0.5), -math.sqrt(0.5)]]), rtol=0, atol=1e-6)


def _ones(*values):
    return torch.tensor([list(values)])


def test_clipped_surrogate_caps_large_positive_ratio():
    # ratio = e^1 > 1.2 and A = +1, so the loss is max(-e, -1.2) = -1.2
    old = torch.zeros(1, 2)
    loss = clipped_surrogate(old + 1.0, old, torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(loss, torch.full((1, 2), -1.2))


def test_clipped_surrogate_negative_advantage_takes_the_larger_loss():
    # A = -2. ratio e^1: max(2e, 2*1.2) = 2e (unclipped). ratio e^-1: max(2/e, 2*0.8) = 1.6 (clipped)
    logprobs, old = _ones(1.0, -1.0), torch.zeros(1, 2)
    loss = clipped_surrogate(logprobs, old, torch.full((1, 2), -2.0), torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(loss, _ones(2 * math.e, 1.6))


def test_clipped_surrogate_positive_advantage_small_ratio_is_unclipped():
    # A = +1, ratio e^-1 = 0.368 < 0.8: max(-0.368, -0.8) = -0.368 (no gradient cut for r < 1 - eps)
    loss = clipped_surrogate(_ones(-1.0), torch.zeros(1, 1), _ones(1.0), _ones(True))
    torch.testing.assert_close(loss, _ones(-math.exp(-1.0)))


def test_dual_clip_bounds_negative_advantage_loss():
    # A = -1, ratio e^2 = 7.39: PPO loss 7.39, dual clip c = 3 caps it at 3
    loss = clipped_surrogate(_ones(2.0), torch.zeros(1, 1), _ones(-1.0), _ones(True), dual_clip=3.0)
    torch.testing.assert_close(loss, _ones(3.0))
    # positive advantage is untouched by the dual clip
    loss = clipped_surrogate(_ones(2.0), torch.zeros(1, 1), _ones(1.0), _ones(True), dual_clip=3.0)
    torch.testing.assert_close(loss, _ones(-1.2))


def test_clip_higher_uses_eps_high_for_positive_advantage():
    loss = clipped_surrogate(_ones(1.0), torch.zeros(1, 1), _ones(1.0), _ones(True), eps_low=0.2, eps_high=0.28)
    torch.testing.assert_close(loss, _ones(-1.28))


def test_masked_tokens_have_zero_loss():
    loss = clipped_surrogate(_ones(1.0, 1.0), torch.zeros(1, 2), _ones(1.0, 1.0), _ones(True, False))
    assert loss[0, 1].item() == 0.0


def test_shaped_surrogate_luffy():
    # p = 0.5: -A * 0.5 / 0.6 with A = 1 -> -5/6
    loss = shaped_surrogate(_ones(math.log(0.5)), _ones(1.0), _ones(True), gamma=0.1)
    torch.testing.assert_close(loss, _ones(-5 / 6))


def test_sft_loss_weight():
    torch.testing.assert_close(sft_loss(_ones(-2.0, -1.0), _ones(True, False), 0.001), _ones(0.002, 0.0))


def test_token_losses_prefix_rules():
    # token 0 generated, token 1 prefix; ratio 1 everywhere, A = 0.5, p(prefix) = 0.5
    logprobs = _ones(math.log(0.5), math.log(0.5))
    generated, prefix = _ones(True, False), _ones(False, True)
    adv = _ones(0.5, 0.5)
    ppo = token_losses(logprobs, logprobs, adv, generated, prefix, PPOPrefix(), Clip())
    torch.testing.assert_close(ppo, _ones(-0.5, -0.5))  # same weight on prefix and generated tokens
    shaped = token_losses(logprobs, logprobs, adv, generated, prefix, ShapedPrefix(gamma=0.1), Clip())
    torch.testing.assert_close(shaped, _ones(-0.5, -0.5 * 5 / 6))
    sft = token_losses(logprobs, logprobs, adv, generated, prefix, SFTPrefix(weight=0.001), Clip())
    torch.testing.assert_close(sft, _ones(-0.5, 0.001 * math.log(2)))
    with pytest.raises(ValueError, match="prefix.rule"):
        Prefix(rule="nope")  # an unknown rule is a config error, never a fall-through


def test_aggregations_by_hand():
    per_token = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert aggregate_constant(per_token, num_sequences=2, max_response_tokens=4).item() == pytest.approx(6 / 8)
    assert aggregate_token_mean(per_token, num_tokens=3).item() == pytest.approx(2.0)
    assert aggregate_seq_mean_token_mean(per_token, mask, num_sequences=2).item() == pytest.approx((1.5 + 3) / 2)


@pytest.mark.parametrize("aggregate", ["constant", "token_mean", "seq_mean_token_mean"])
def test_gradient_is_the_same_for_1_and_4_micro_batches(aggregate):
    torch.manual_seed(0)
    n, t = 8, 5
    logits = torch.randn(n, t, requires_grad=True)
    old = torch.randn(n, t)
    adv = torch.randn(n, 1).expand(n, t)
    mask = torch.rand(n, t) > 0.3

    def loss_of(rows):
        per_token = clipped_surrogate(logits[rows], old[rows], adv[rows], mask[rows])
        if aggregate == "constant":
            return aggregate_constant(per_token, n, t)
        if aggregate == "token_mean":
            return aggregate_token_mean(per_token, int(mask.sum()))
        return aggregate_seq_mean_token_mean(per_token, mask[rows], n)

    loss_of(slice(0, n)).backward()
    full = logits.grad.clone()
    logits.grad = None
    for start in range(0, n, 2):
        loss_of(slice(start, start + 2)).backward()
    torch.testing.assert_close(logits.grad, full, rtol=0, atol=1e-7)
