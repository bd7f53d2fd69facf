"""Truncated IS weights against hand-worked numbers (no vLLM needed); the weight check and the
log-prob mismatch metrics are in test_weight_fingerprint.py."""

import math

import torch

from prefix_rft_pl.engines.checks import truncated_is_weights


def test_truncated_is_weights_caps_and_leaves_prefix_at_one():
    # generated: exp(-1 - (-2)) = e, capped at 2; exp(-2 - (-1)) = 1/e, kept.
    # prefix / padding: exactly 1, whatever the engine tensor holds (NaN, huge gaps)
    old = torch.tensor([[-1.0, -2.0, -30.0, 0.0]])
    engine = torch.tensor([[-2.0, -1.0, float("nan"), -50.0]])
    generated = torch.tensor([[True, True, False, False]])
    weights = truncated_is_weights(old, engine, generated, cap=2.0)
    torch.testing.assert_close(weights, torch.tensor([[2.0, math.exp(-1.0), 1.0, 1.0]]), rtol=0, atol=1e-6)


def test_truncated_is_weights_below_cap_is_the_ratio():
    # exp(0.5) = 1.6487 < cap 3
    weights = truncated_is_weights(torch.tensor([[0.0]]), torch.tensor([[-0.5]]), torch.tensor([[True]]), cap=3.0)
    torch.testing.assert_close(weights, torch.tensor([[math.exp(0.5)]]), rtol=0, atol=1e-6)
