"""UFT's hints (SPEC 3): pure functions for p(t), the segments and the hint drawn per prompt,
and `uft_hint_batch`, the hinted rollout batch of one step.

Source (read, not copied): UFT, liumy2010/UFT @ ad3c8ec7d258d4e4cf3f359dd75925d0f127a520,
verl/utils/dataset/rl_dataset.py (`__getitem__`: hint slicing) and
verl/trainer/ppo/ray_trainer.py (timestep = global_steps, from 1).

Departure (UFT): UFT's hint is a list of solution pieces (strings) cut into at most five
segments; a PromptItem carries token ids only, so here the units are the demonstration's
tokens (its trailing EOS excluded) and the segments have (nearly) equal token counts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from prefix_rft_pl.config import Hints
from prefix_rft_pl.types import PromptDemoBatch, PromptItem


def uft_hint_prob(step: int, hint_steps: int, start: float = 0.95, end: float = 0.05) -> float:
    """UFT's p(t): cosine from `start` (t = 0) to `end` (t = hint_steps), then 0 (no hint).

    `step` counts training iterations (rollout batches) from 1, as verl's `global_steps`.
    """
    if step > hint_steps:
        return 0.0
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * step / hint_steps))


def hint_boundaries(num_units: int, max_segments: int = 5) -> list[int]:
    """UFT's `separation`: num = min(max_segments, n) segments of n units; boundary i is
    round(i / num * n) (Python's round), the last is n."""
    num = min(max_segments, num_units)
    if num == 0:
        return [0]
    bounds = [round(i / num * num_units) for i in range(num + 1)]
    bounds[-1] = num_units
    return bounds


def sample_hint_length(num_units: int, prob: float, rng: random.Random, max_segments: int = 5) -> int:
    """Units in the hint: the first k segments, k ~ Binomial(num segments, prob), drawn as
    UFT does (one Bernoulli(prob) per segment, summed)."""
    bounds = hint_boundaries(num_units, max_segments)
    k = sum(rng.random() < prob for _ in range(len(bounds) - 1))
    return bounds[k]


def hint_units(demo_ids: Sequence[int], eos_id: int | None) -> list[int]:
    """The ids a hint is cut from: the demonstration without its trailing EOS."""
    ids = list(demo_ids)
    return ids[:-1] if ids and eos_id is not None and ids[-1] == eos_id else ids


def with_hints(items: Sequence[PromptItem], hint_lens: Sequence[int], eos_id: int | None
               ) -> tuple[list[PromptItem], list[PromptItem]]:
    """UFT's prompts: each item's prompt followed by its hint (the first `hint_len` ids of its
    first demonstration), used by all of its rollouts; and the same hints as SFT targets
    (prompt, [hint]), with no target where the hint is empty."""
    hinted, targets = [], []
    for item, length in zip(items, hint_lens):
        hint = hint_units(item.demo_ids[0], eos_id)[:length] if item.demo_ids else []
        hinted.append(PromptItem(item.uid, item.prompt_ids + hint, item.demo_ids, item.answers, item.extra))
        targets.append(PromptItem(item.uid, item.prompt_ids, [hint] if hint else [], item.answers, item.extra))
    return hinted, targets


def uft_hint_batch(batch: PromptDemoBatch, hints: Hints, iteration: int, rng: random.Random, eos_id: int | None
                   ) -> tuple[PromptDemoBatch, list[PromptItem], dict[str, float]]:
    """UFT: every prompt followed by a hint drawn for rollout batch `iteration` (verl's
    global_steps, from 1); returns the hinted batch, the hints as SFT targets, and the metrics."""
    prob = uft_hint_prob(iteration, hints.steps, hints.prob_start, hints.prob_end)
    units = [len(hint_units(item.demo_ids[0], eos_id)) if item.demo_ids else 0 for item in batch.items]
    lengths = [sample_hint_length(n, prob, rng, hints.max_segments) for n in units]
    hinted, targets = with_hints(batch.items, lengths, eos_id)
    metrics = {"rollout/hint_prob": prob, "rollout/hint_ratio": sum(lengths) / max(sum(units), 1)}
    return PromptDemoBatch(hinted), targets, metrics


