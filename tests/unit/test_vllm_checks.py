"""Stale-weight check and truncated IS weights against hand-worked numbers (no vLLM needed)."""

import math

import pytest
import torch

from prefix_rft_pl.engines.checks import StaleWeightsError, logprob_mismatch, truncated_is_weights


def test_logprob_mismatch_counts_generated_tokens_only():
    # row 0: prefix token (huge gap, NaN on the engine side) then generated gaps 0.1 and 0.3
    # row 1: generated gap 0.2, then padding with a huge gap
    trainer = torch.tensor([[-9.0, -1.0, -2.0], [-0.5, 5.0, 0.0]])
    engine = torch.tensor([[float("nan"), -1.1, -1.7], [-0.7, -5.0, 0.0]])
    generated = torch.tensor([[False, True, True], [True, False, False]])
    mean_abs, max_abs = logprob_mismatch(trainer, engine, generated)
    assert mean_abs == pytest.approx((0.1 + 0.3 + 0.2) / 3, abs=1e-6)
    assert max_abs == pytest.approx(0.3, abs=1e-6)


def test_logprob_mismatch_without_generated_tokens_is_zero():
    x = torch.randn(2, 3)
    assert logprob_mismatch(x, x + 1.0, torch.zeros(2, 3, dtype=torch.bool)) == (0.0, 0.0)


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


def test_stale_weights_error_names_the_cause():
    with pytest.raises(StaleWeightsError, match="stale or wrong weights"):
        raise StaleWeightsError()
