"""pass@k against exact rational values, avg@k against a hand count."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest
import torch

from eval_harness.metrics import AvgAtK, PassAtK, pass_at_k, powers_of_two


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (5, 2, 4), (32, 1, 16), (64, 3, 64), (2048, 1, 1),
     (2048, 1, 1024), (2048, 7, 2048), (2048, 3, 512), (2048, 100, 16), (2048, 2047, 1), (2048, 0, 2048)],
)
def test_pass_at_k_matches_exact_binomials(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), rel=1e-12, abs=1e-15)


def test_pass_at_k_hand_values():
    # 2 of 4 correct: pass@1 = 1/2, pass@2 = 1 - C(2,2)/C(4,2) = 5/6, pass@3 = 1
    assert pass_at_k(4, 2, 1) == pytest.approx(0.5, abs=1e-15)
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6, abs=1e-15)
    assert pass_at_k(4, 2, 3) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 2, 5)


def test_pass_at_k_small_values_keep_relative_precision():
    # 1 correct of 2048, k = 1: exactly 1/2048; the product form has no cancellation
    assert pass_at_k(2048, 1, 1) == 1 / 2048


def test_powers_of_two():
    assert powers_of_two(1) == [1]
    assert powers_of_two(32) == [1, 2, 4, 8, 16, 32]
    assert powers_of_two(48) == [1, 2, 4, 8, 16, 32]


def test_pass_at_k_metric_averages_problems():
    metric = PassAtK([1, 2, 4])
    metric.update(torch.tensor([2, 0]), torch.tensor([4, 4]))
    metric.update(torch.tensor([4]), torch.tensor([4]))
    # problem 1: 1/2, 5/6, 1; problem 2: 0, 0, 0; problem 3: 1, 1, 1
    expected = torch.tensor([(0.5 + 1) / 3, (5 / 6 + 1) / 3, 2 / 3], dtype=torch.float64)
    torch.testing.assert_close(metric.compute(), expected, rtol=0, atol=1e-15)


def test_avg_at_k_hand_count():
    # 3 problems x 4 samples; correct: [1,0,1,1], [0,0,0,0], [1,1,1,1] -> (3/4 + 0 + 1) / 3
    grades = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]])
    metric = AvgAtK()
    metric.update(grades.sum(1), torch.full((3,), 4))
    assert metric.compute().item() == pytest.approx(7 / 12, abs=1e-15)
    # avg@k equals pass@1 over the same pool
    pass1 = PassAtK([1])
    pass1.update(grades.sum(1), torch.full((3,), 4))
    assert pass1.compute().item() == pytest.approx(7 / 12, abs=1e-15)
