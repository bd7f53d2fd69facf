"""Prefix sampling: prefix lengths, hybrid requests, trajectory tensors and entropy-based
selection of prefix tokens (SPEC section 2, steps 1, 2 and 6).

Departure from the reference code: entropy selection ranks over the whole optimisation
batch (gathered across ranks by the caller), not within a micro-batch, so the kept set
does not depend on the micro-batch size or the data-parallel layout.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from prefix_rft_pl.types import GenerationRequest, PromptItem, Rollout

SelectionMode = Literal["top", "bottom", "random", "none", "freeze"]


def prefix_length(prefix_ratio: float, demo_len: int, min_prefix_tokens: int = 0) -> int:
    """L = floor(ratio * |y*|), clamped to [min_prefix_tokens, |y*| - 1].

    A ratio >= 1 means the whole demonstration (LUFFY, SFT): L = |y*|, nothing generated.
    """
    if prefix_ratio >= 1.0:
        return demo_len
    length = math.floor(prefix_ratio * demo_len)
    return max(0, min(max(length, min_prefix_tokens), demo_len - 1))


def num_kept(num_prefix_tokens: int, keep_ratio: float) -> int:
    """How many of n prefix tokens top/bottom/random-k keeps: round(k * n), within [0, n]."""
    return min(num_prefix_tokens, max(0, round(keep_ratio * num_prefix_tokens)))


def select_prefix_tokens(
    entropy: Tensor,       # [M, T] current-policy entropy (any padding: masked out)
    prefix_mask: Tensor,   # [M, T] True = demonstration prefix token
    keep_ratio: float,     # k, e.g. 0.2 for the paper's top-20%
    mode: SelectionMode = "top",
    generator: torch.Generator | None = None,
) -> Tensor:               # [M, T] bool, True = prefix token keeps its advantage
    """Keep k% of ALL prefix tokens of the batch by entropy; generated tokens are not touched.

    Ties are broken by position in the flattened batch (earlier first), so the result is
    deterministic and the same for any split of the batch.
    """
    flat_mask = prefix_mask.reshape(-1)
    kept = torch.zeros_like(flat_mask)
    positions = flat_mask.nonzero().squeeze(-1)                                # [n]
    if mode == "none":
        return prefix_mask.clone()
    if mode == "freeze" or positions.numel() == 0:
        return kept.view_as(prefix_mask)
    count = num_kept(positions.numel(), keep_ratio)
    values = entropy.reshape(-1)[positions].float()                            # [n]
    if mode == "random":
        order = torch.randperm(positions.numel(), generator=generator)
    else:
        order = torch.sort(values, descending=(mode == "top"), stable=True).indices
    kept[positions[order[:count]]] = True
    return kept.view_as(prefix_mask)


@dataclass
class Trajectory:
    """One trajectory of a group: prompt, response (prefix + generated) and bookkeeping."""

    prompt_index: int            # index into the batch's prompts
    prompt_ids: list[int]
    prefix_ids: list[int]        # demonstration prefix (empty for ordinary rollouts)
    generated_ids: list[int]
    engine_logprobs: list[float] | None  # one per generated token
    finish_reason: str

    @property
    def response_ids(self) -> list[int]:
        return self.prefix_ids + self.generated_ids

    @property
    def is_hybrid(self) -> bool:
        return bool(self.prefix_ids)


def build_group_requests(
    items: Sequence[PromptItem],
    group_size: int,
    num_hybrid: int,
    prefix_ratios: Sequence[float],   # [B * num_hybrid] one ratio per hybrid rollout
    max_response_tokens: int,
    min_prefix_tokens: int,
    rng: random.Random,
) -> tuple[list[GenerationRequest], list[int]]:
    """Per prompt: one request of G - G_hyb ordinary samples, then G_hyb hybrid requests.

    A hybrid continues from prompt + the first L ids of a demonstration (picked at random
    among the prompt's demonstrations) with budget max_response_tokens - L. Returns the
    requests and, per request, the index of its prompt.
    """
    requests, owners = [], []
    ratios = iter(prefix_ratios)
    for index, item in enumerate(items):
        if group_size > num_hybrid:
            requests.append(GenerationRequest(item.prompt_ids, max_response_tokens, [], group_size - num_hybrid))
            owners.append(index)
        for _ in range(num_hybrid):
            demo = rng.choice(item.demo_ids)
            if len(demo) > max_response_tokens:  # never cut: the data module leaves such demonstrations out
                raise ValueError(f"prompt {item.uid}: a demonstration of {len(demo)} tokens exceeds "
                                 f"model.rollout.max_response_tokens = {max_response_tokens}; set "
                                 "data.init_args.max_demo_tokens (the CLI links it to the budget) to leave such "
                                 "demonstrations out")
            length = prefix_length(next(ratios), len(demo), min_prefix_tokens)
            budget = 0 if length == len(demo) else max_response_tokens - length  # whole demo: nothing to add
            requests.append(GenerationRequest(item.prompt_ids, budget, demo[:length], 1))
            owners.append(index)
    return requests, owners


def assemble_trajectories(
    items: Sequence[PromptItem],
    requests: Sequence[GenerationRequest],
    owners: Sequence[int],
    rollouts: Sequence[Rollout],      # request-major, num_samples per request
) -> list[Trajectory]:
    """Pair every rollout with its request: trajectories come out prompt-major, G per prompt."""
    out, it = [], iter(rollouts)
    for request, owner in zip(requests, owners):
        for _ in range(request.num_samples):
            rollout = next(it)
            out.append(Trajectory(owner, items[owner].prompt_ids, request.prefix_ids,
                                  rollout.token_ids, rollout.logprobs, rollout.finish_reason))
    return out


@dataclass
class TrajectoryBatch:
    """Trajectories as tensors. Prompts are left-padded so every response starts at column P."""

    input_ids: Tensor        # [N, P + T]
    attention_mask: Tensor   # [N, P + T]
    position_ids: Tensor     # [N, P + T]
    response_ids: Tensor     # [N, T]
    mask: Tensor             # [N, T] True = response token (prefix or generated)
    prefix_mask: Tensor      # [N, T] True = demonstration prefix token
    engine_logprobs: Tensor  # [N, T] engine log-probs on generated tokens, 0 elsewhere

    @property
    def prompt_width(self) -> int:
        return self.input_ids.shape[1] - self.response_ids.shape[1]

    @property
    def generated_mask(self) -> Tensor:
        return self.mask & ~self.prefix_mask

    def select(self, rows: slice | Tensor) -> TrajectoryBatch:
        return TrajectoryBatch(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


def pad_trajectories(trajectories: Sequence[Trajectory], pad_id: int) -> TrajectoryBatch:
    n = len(trajectories)
    width_p = max(len(t.prompt_ids) for t in trajectories)
    width_t = max(1, max(len(t.response_ids) for t in trajectories))
    input_ids = torch.full((n, width_p + width_t), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width_p + width_t), dtype=torch.long)
    prefix_mask = torch.zeros((n, width_t), dtype=torch.bool)
    engine_logprobs = torch.zeros((n, width_t), dtype=torch.float32)
    for i, t in enumerate(trajectories):
        p, r = len(t.prompt_ids), len(t.response_ids)
        input_ids[i, width_p - p:width_p] = torch.tensor(t.prompt_ids, dtype=torch.long)
        input_ids[i, width_p:width_p + r] = torch.tensor(t.response_ids, dtype=torch.long)
        attention_mask[i, width_p - p:width_p + r] = 1
        prefix_mask[i, :len(t.prefix_ids)] = True
        if t.engine_logprobs:
            start = len(t.prefix_ids)
            engine_logprobs[i, start:start + len(t.engine_logprobs)] = torch.tensor(t.engine_logprobs)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    response_ids = input_ids[:, width_p:]
    mask = attention_mask[:, width_p:].bool()
    return TrajectoryBatch(input_ids, attention_mask, position_ids, response_ids, mask, prefix_mask, engine_logprobs)
