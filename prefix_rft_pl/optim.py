"""Optimisers: torch AdamW, or bitsandbytes 8-bit AdamW (its paged variant on GPUs)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float):
    params = [p for p in params if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name in ("adamw8bit", "paged_adamw8bit"):
        import bitsandbytes as bnb

        cls = bnb.optim.PagedAdamW8bit if name == "paged_adamw8bit" else bnb.optim.AdamW8bit
        return cls(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"model.optimizer must be 'adamw', 'adamw8bit' or 'paged_adamw8bit', got {name!r}")
