"""Machinery of the baseline rows (SPEC 3) that is not a per-token weight: UFT's hints,
ReLIFT's buffer, the prompts of an optimisation mini-batch. Pure functions, which module.py
calls, and the two that run on the module: UFT's hinted batch (`uft_hint_batch`) and ReLIFT's
SFT step (`relift_step`).

Sources (read, not copied):
- UFT, liumy2010/UFT @ ad3c8ec7d258d4e4cf3f359dd75925d0f127a520, verl/utils/dataset/rl_dataset.py
  (`__getitem__`: hint slicing) and verl/trainer/ppo/ray_trainer.py (timestep = global_steps, from 1).
- ReLIFT, TheRoadQaQ/ReLIFT @ eb95454f45eb84bf8f8efa3728f4839548426f5f, relift/verl/verl/relift/trainer.py
  (`sft_buffer_batch`: concat([new, buffer]), then the first `sft_data_size` leave).

Departure (UFT): UFT's hint is a list of solution pieces (strings) cut into at most five
segments; a PromptItem carries token ids only, so here the units are the demonstration's
tokens (its trailing EOS excluded) and the segments have (nearly) equal token counts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from prefix_rft_pl.types import PromptItem


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
        hinted.append(PromptItem(item.uid, item.prompt_ids + hint, item.demo_ids, item.answers))
        targets.append(PromptItem(item.uid, item.prompt_ids, [hint] if hint else [], item.answers))
    return hinted, targets


def relift_buffer_step(buffer: Sequence, failed: Sequence, size: int) -> tuple[list, list]:
    """ReLIFT's buffer of all-fail prompts: the newest go in front; once it holds `size`,
    the first `size` (the newest) leave for one SFT step. Returns (SFT batch, or [], buffer)."""
    queue = list(failed) + list(buffer)
    if len(queue) >= size:
        return queue[:size], queue[size:]
    return [], queue


def mini_batch_prompts(rows: slice, group_size: int) -> slice:
    """The prompts whose trajectories lie in `rows` (trajectories are prompt-major, G each);
    a prompt whose group a mini-batch boundary cuts belongs to both mini-batches."""
    return slice(rows.start // group_size, -(-rows.stop // group_size))


def uft_hint_batch(module, batch):
    """UFT: every prompt followed by a hint drawn for this rollout batch; returns the hinted
    PromptDemoBatch and the hints as SFT targets. Not pure: `module` is the PrefixRFTModule."""
    from prefix_rft_pl.types import PromptDemoBatch

    hp = module.hparams
    iteration = module.global_step // (hp.ppo_epochs * hp.mini_batches) + 1  # verl's global_steps, from 1
    prob = uft_hint_prob(iteration, hp.hint_steps, hp.hint_prob_start, hp.hint_prob_end)
    rng = random.Random(hash((hp.seed, iteration, module.global_rank, 1)))
    eos = module.tokenizer.eos_token_id
    units = [len(hint_units(item.demo_ids[0], eos)) if item.demo_ids else 0 for item in batch.items]
    lengths = [sample_hint_length(n, prob, rng, hp.hint_max_segments) for n in units]
    hinted, targets = with_hints(batch.items, lengths, eos)
    module.log_dict({"rollout/hint_prob": prob, "rollout/hint_ratio": sum(lengths) / max(sum(units), 1)})
    return PromptDemoBatch(hinted), targets


def relift_step(module, batch, rewards) -> None:
    """ReLIFT: queue prompts whose G rollouts all failed in one buffer shared by all ranks
    (every rank holds the same copy, in rank order); once it holds a global batch, every rank
    takes its share of it and all take one SFT step together. The step is not counted.
    Not pure: the module's step (moved here to keep module.py short); `module` is the PrefixRFTModule."""
    from prefix_rft_pl.distributed import all_gather_objects, take_share
    from prefix_rft_pl.update import demo_sft_backward, gather_counts, optimizer_step

    hp = module.hparams
    failed = [item for item, r in zip(batch.items, rewards) if r.max() <= 0 and item.demo_ids]
    global_batch = int(gather_counts(module, len(batch)).sum())
    todo, module.relift_buffer = relift_buffer_step(module.relift_buffer, all_gather_objects(failed), global_batch)
    sft_steps = 0
    if todo:
        demo_sft_backward(module, take_share(todo, module.global_rank, module.trainer.world_size), 1.0,
                          hp.relift_sft_entropy_coef)
        # its own optimiser, bare: not a training step
        optimizer_step(module, module._optimizer(1).optimizer, hp.relift_sft_max_grad_norm)
        sft_steps = 1
    module.relift_sft_steps += sft_steps
    module.log_dict({"train/relift_buffer": float(len(module.relift_buffer)),
                     "train/relift_sft_steps": float(module.relift_sft_steps)})
