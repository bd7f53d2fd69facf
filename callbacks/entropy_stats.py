"""Logs entropy statistics of each step: mean entropy of prefix and of generated tokens,
the entropy threshold of the prefix selection, and the fraction of prefix tokens kept.

Optional: the module trains the same without it. It reads what `training_step` returns.
"""

from __future__ import annotations

import lightning as L
import torch


def entropy_statistics(entropy, mask, prefix_mask, kept) -> dict[str, float]:
    """entropy [N, T]; mask, prefix_mask, kept [N, T] bool. Returns the step's statistics."""
    generated = mask & ~prefix_mask
    stats = {"entropy/generated_mean": entropy[generated].mean().item() if generated.any() else float("nan")}
    if prefix_mask.any():
        stats["entropy/prefix_mean"] = entropy[prefix_mask].mean().item()
        stats["entropy/kept_fraction"] = kept[prefix_mask].float().mean().item()
        stats["entropy/threshold"] = entropy[kept].min().item() if kept.any() else float("nan")
    return stats


class EntropyStats(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not isinstance(outputs, dict) or "entropy" not in outputs:
            return
        with torch.no_grad():
            stats = entropy_statistics(outputs["entropy"], outputs["mask"], outputs["prefix_mask"], outputs["kept"])
        pl_module.log_dict(stats)
