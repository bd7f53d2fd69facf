"""avg@k and unbiased pass@k (SPEC 4), as pure functions and as torchmetrics metrics.

pass@k = 1 - C(n-c, k) / C(n, k) for a problem with c correct among n samples, averaged
over problems. The ratio of binomials is evaluated as the product
    C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
(Chen et al., 2021), which stays in [0, 1] at every step: no factorials, no overflow,
no cancellation for n up to thousands.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k of one problem: the chance that k of its n samples, drawn without
    replacement, include at least one of the c correct ones."""
    n, c = num_samples, num_correct
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


def powers_of_two(n: int) -> list[int]:
    """1, 2, 4, ... up to n (the pass@k curve's k values)."""
    return [2**e for e in range(n.bit_length()) if 2**e <= n]


class AvgAtK(Metric):
    """avg@k: mean over problems of the fraction of its k samples that are correct."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("accuracy_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_problems", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, num_correct: Tensor, num_samples: Tensor) -> None:
        """num_correct, num_samples: [P] counts per problem."""
        self.accuracy_sum += (num_correct.double() / num_samples.double()).sum()
        self.num_problems += num_correct.numel()

    def compute(self) -> Tensor:
        return self.accuracy_sum / self.num_problems


class PassAtK(Metric):
    """Unbiased pass@k for each k in `ks`, averaged over problems (every problem needs n >= max(ks))."""

    full_state_update = False

    def __init__(self, ks: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.ks = list(ks)
        self.add_state("pass_sum", torch.zeros(len(self.ks), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_problems", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, num_correct: Tensor, num_samples: Tensor) -> None:
        """num_correct, num_samples: [P] counts per problem."""
        for c, n in zip(num_correct.tolist(), num_samples.tolist()):
            values = [pass_at_k(n, c, k) for k in self.ks]
            self.pass_sum += torch.tensor(values, dtype=torch.float64)
        self.num_problems += num_correct.numel()

    def compute(self) -> Tensor:
        """[len(ks)] pass@k per k."""
        return self.pass_sum / self.num_problems
