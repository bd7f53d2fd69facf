"""ReLIFT (SPEC 3): prompts whose G rollouts all fail go into one buffer shared by all ranks;
once it holds a global batch, every rank takes its share and all take one SFT step together,
on ReLIFT's own optimiser. The step counts neither towards max_steps nor the prefix schedule.

Source (read, not copied): ReLIFT, TheRoadQaQ/ReLIFT @ eb95454f45eb84bf8f8efa3728f4839548426f5f,
relift/verl/verl/relift/trainer.py (`sft_buffer_batch`: concat([new, buffer]), then the first
`sft_data_size` leave).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from prefix_rft_pl.config import ReLIFT
from prefix_rft_pl.distributed import take_share
from prefix_rft_pl.types import PromptDemoBatch
from prefix_rft_pl.update.forward import Passes
from prefix_rft_pl.update.steps import demo_sft_backward, optimizer_step


def relift_buffer_step(buffer: Sequence, failed: Sequence, size: int) -> tuple[list, list]:
    """ReLIFT's buffer of all-fail prompts: the newest go in front; once it holds `size`,
    the first `size` (the newest) leave for one SFT step. Returns (SFT batch, or [], buffer)."""
    queue = list(failed) + list(buffer)
    if len(queue) >= size:
        return queue[:size], queue[size:]
    return [], queue


def relift_step(passes: Passes, sft_optimizer, settings: ReLIFT, buffer: list, batch: PromptDemoBatch,
                rewards: Tensor) -> tuple[list, bool]:
    """Queue this batch's all-fail prompts (every rank holds the same buffer, in rank order); once
    the buffer holds a global batch, take one SFT step with the bare `sft_optimizer`. Returns the
    new buffer and whether a step was taken."""
    failed = [item for item, r in zip(batch.items, rewards) if r.max() <= 0 and item.demo_ids]
    global_batch = int(passes.ranks.gather_counts(len(batch)).sum())
    todo, buffer = relift_buffer_step(buffer, passes.ranks.gather_objects(failed), global_batch)
    if todo:
        demo_sft_backward(passes, take_share(todo, passes.ranks.rank, passes.ranks.world), 1.0,
                          settings.sft_entropy_coef)
        optimizer_step(passes.model, sft_optimizer, settings.sft_max_grad_norm)
    return buffer, bool(todo)
