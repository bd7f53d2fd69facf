"""`python -m prefix_rft_pl` with every row in the update: a counterfactual for benchmarks only.

    python -m benchmarks.all_rows_fit fit --config ...

`passes.rows_with_gradient` is replaced by "every row", so rows whose every token has
advantage 0 go through the forward and backward again (adding 0 to the gradient). It shows
what leaving them out buys (`benchmarks/trl_compare.py --all-rows`); the trainer never runs
this way.
"""

import torch

from prefix_rft_pl import passes
from prefix_rft_pl.cli import main


def every_row(token_advantages, prefix_mask, prefix_rule, regularised):
    return torch.ones(token_advantages.shape[0], dtype=torch.bool)


if __name__ == "__main__":
    passes.rows_with_gradient = every_row
    main()
