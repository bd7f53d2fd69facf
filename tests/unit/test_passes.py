"""Which rows each pass covers (prefix_rft_pl.update.rows) and the HF engine's length batches."""

import pytest
import torch

from prefix_rft_pl import losses
from prefix_rft_pl.config import Clip
from prefix_rft_pl.engines.hf import length_batches
from prefix_rft_pl.update.rows import reuses_old_logprobs, rows_with_gradient, scatter_rows, separate_pass_rows
from prefix_rft_pl.variants import (
    DrGRPOConstant,
    PPOPrefix,
    SeqMeanTokenMean,
    SFTPrefix,
    ShapedPrefix,
    TokenMean,
    TokenSum,
)


def test_old_logprobs_are_reused_only_with_one_optimiser_step_per_batch_and_no_tis():
    assert reuses_old_logprobs(1, 1, None)
    assert not reuses_old_logprobs(2, 1, None)   # the second epoch's ratio is not 1
    assert not reuses_old_logprobs(1, 2, None)   # the second mini-batch sees updated weights
    assert not reuses_old_logprobs(1, 1, 2.0)    # TIS weights need pi_old before the update


def test_rows_with_gradient():
    adv = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.0]])
    prefix = torch.tensor([[False, False], [False, False], [True, False]])
    ppo, shaped, sft = (rule.uses_advantage for rule in (PPOPrefix(), ShapedPrefix(), SFTPrefix()))
    assert rows_with_gradient(adv, prefix, ppo, False).tolist() == [False, True, False]
    assert rows_with_gradient(adv, prefix, shaped, False).tolist() == [False, True, False]
    assert rows_with_gradient(adv, prefix, sft, False).tolist() == [False, True, True]  # SFT ignores A
    assert rows_with_gradient(adv, prefix, ppo, True).tolist() == [True, True, True]    # entropy / KL


@pytest.mark.parametrize("rule,dual_clip", [(PPOPrefix(), None), (PPOPrefix(), 3.0), (ShapedPrefix(), None)])
def test_a_row_without_advantage_adds_exactly_zero_gradient(rule, dual_clip):
    # the skip is exact: rows_with_gradient's False rows have d loss / d logprobs == 0, any ratio
    torch.manual_seed(0)
    logprobs = (-torch.rand(3, 4)).requires_grad_()
    old = -torch.rand(3, 4)
    adv = torch.tensor([[0.0] * 4, [1.0, -1.0, 0.0, 2.0], [0.0] * 4])
    prefix = torch.tensor([[False] * 4, [True, False, False, False], [True, True, False, False]])
    mask = torch.ones(3, 4, dtype=torch.bool)
    per_token = losses.token_losses(logprobs, old, adv, mask & ~prefix, prefix, rule, Clip(dual_clip=dual_clip))
    for aggregation in (DrGRPOConstant(), TokenMean(), SeqMeanTokenMean(), TokenSum()):
        (grad,) = torch.autograd.grad(aggregation(per_token, mask, 3.0, 4), logprobs, retain_graph=True)
        skipped = ~rows_with_gradient(adv, prefix, rule.uses_advantage, False)
        assert skipped.tolist() == [True, False, True]
        assert grad[skipped].eq(0).all() and grad[~skipped].ne(0).any()


def test_separate_pass_rows():
    candidates = torch.tensor([True, False, True, False])
    prefix = torch.tensor([[False], [False], [True], [True]])
    assert separate_pass_rows(False, candidates, prefix).tolist() == [True] * 4
    # reuse: prefix rows (entropy for the selection) and the rows the update skips (metrics)
    assert separate_pass_rows(True, candidates, prefix).tolist() == [False, True, True, True]


def test_scatter_rows():
    out = scatter_rows(torch.tensor([[1.0], [2.0]]), torch.tensor([False, True, True]), -1.0)
    torch.testing.assert_close(out, torch.tensor([[-1.0], [1.0], [2.0]]))


def test_length_batches_split_where_padding_would_exceed_the_bound():
    # 4 prompts of 10 tokens and two of 30: padding the short ones to 30 would be 80 tokens of
    # padding for 100 real ones (> 25%); 11 joins the 10s (4 padding tokens of 51)
    assert length_batches([10, 30, 10, 11, 10, 30, 10], 0.25) == [[0, 2, 4, 6, 3], [1, 5]]  # by length, stable
    assert length_batches([10, 30, 10], float("inf")) == [[0, 1, 2]]  # one batch, in request order
    assert length_batches([5, 3], 0.0) == [[1], [0]]
