"""Which rows and tokens each pass of a step covers: work skipped only where it cannot
change the update, the prefix tokens kept by entropy (ranked over all ranks), and the
prompts of an optimisation mini-batch.

- Rows without gradient. A trajectory whose every token has advantage 0 (a group whose
  rewards are all equal, under Dr. GRPO) adds exactly 0 to the gradient of the clipped
  surrogate and of LUFFY's shaped one, whatever the ratio, and 0 to the sums of every
  aggregation (whose normalisers are counted over all rows, skipped ones included): the
  update leaves it out. Not when a token-mean regulariser (entropy bonus, KL) weighs every
  token, nor for rows with prefix tokens under the SFT rule, which ignores the advantage.
- Old log-probs. With one optimiser step per rollout batch (1 PPO epoch, 1 mini-batch),
  pi_old is the policy the update's own forward runs, so the old log-probs are its
  log-probs, detached (the ratio is exactly 1, where a separate pass gives 1 up to
  rounding). The separate no-grad pass is then needed only for the entropy of prefix
  tokens (their selection comes before the loss) and for the log-probs and entropies of
  rows the update skips (the trainer/engine mismatch metric and entropy statistics still
  cover every token). TIS needs the old log-probs before the update: no reuse with it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prefix_rft_pl.prefix import SelectionMode, select_prefix_tokens
from prefix_rft_pl.update.ranks import Ranks


def reuses_old_logprobs(ppo_epochs: int, mini_batches: int, tis_cap: float | None) -> bool:
    """True when the old log-probs are the update's own log-probs, detached."""
    return ppo_epochs == 1 and mini_batches == 1 and tis_cap is None


def rows_with_gradient(
    token_advantages: Tensor,  # [N, T] advantage of each token (0 off the response, unkept prefix tokens 0)
    prefix_mask: Tensor,       # [N, T] True = demonstration prefix token
    prefix_uses_advantage: bool,  # the prefix rule's `uses_advantage` (False: SFT on prefix tokens)
    regularised: bool,         # an entropy bonus or a KL term weighs every response token
) -> Tensor:                   # [N] bool, True = the row's loss can have a nonzero gradient
    if regularised:
        return torch.ones(token_advantages.shape[0], dtype=torch.bool)
    rows = token_advantages.ne(0).any(-1)                                      # [N]
    return rows if prefix_uses_advantage else rows | prefix_mask.any(-1)


def separate_pass_rows(
    reuse: bool,               # reuses_old_logprobs(...)
    candidate_rows: Tensor,    # [N] bool, rows_with_gradient before prefix selection (all prefix tokens kept)
    prefix_mask: Tensor,       # [N, T]
) -> Tensor:                   # [N] bool, rows the separate no-grad pass runs on
    """Without reuse: every row (old log-probs for all). With it: rows with prefix tokens (their
    entropy selects prefix tokens) and rows the update will skip (their log-probs, for metrics)."""
    if not reuse:
        return torch.ones(prefix_mask.shape[0], dtype=torch.bool)
    return prefix_mask.any(-1) | ~candidate_rows


def scatter_rows(
    values: Tensor,  # [n, T] values of the selected rows, in order
    rows: Tensor,    # [N] bool, n of them True
    fill: float,     # value of the other rows
) -> Tensor:         # [N, T]
    out = values.new_full((rows.shape[0], values.shape[1]), fill)
    out[rows] = values
    return out


def select_prefix(
    entropy: Tensor,           # [N, T] entropy of this rank's response tokens
    prefix_mask: Tensor,       # [N, T]
    keep: float,               # k of the prefix selection
    mode: SelectionMode,
    width: int,                # max_response_tokens: every rank pads its rows to it before the gather
    generator: torch.Generator,  # the random mode's draw, the same on every rank
    ranks: Ranks,
) -> Tensor:                   # [N, T] bool, this rank's kept prefix tokens
    """Rank prefix tokens over the whole optimisation batch, across data-parallel ranks."""
    ent = torch.zeros(entropy.shape[0], width)
    pm = torch.zeros(entropy.shape[0], width, dtype=torch.bool)
    ent[:, : entropy.shape[1]], pm[:, : entropy.shape[1]] = entropy, prefix_mask
    counts = ranks.gather_counts(entropy.shape[0])                             # [W] rows per rank
    if len(counts) > 1:
        ent = ranks.gather_rows(ent, counts)                                   # [sum N, T_max], rank order
        pm = ranks.gather_rows(pm, counts)
    kept = select_prefix_tokens(ent, pm, keep, mode, generator)
    start = int(counts[: ranks.rank].sum()) if len(counts) > 1 else 0
    return kept[start:start + entropy.shape[0], : entropy.shape[1]]


def mini_batch_prompts(rows: slice, group_size: int) -> slice:
    """The prompts whose trajectories lie in `rows` (trajectories are prompt-major, G each);
    a prompt whose group a mini-batch boundary cuts belongs to both mini-batches."""
    return slice(rows.start // group_size, -(-rows.stop // group_size))
