"""One training run of PrefixRFTModule with a scripted engine on 1 or more CPU ranks.

Run as a script (`python tests/integration/dp_worker.py SPEC.json`): under
`ModelParallelStrategy` Lightning starts the other ranks by running the same command
again, so every rank reads the same spec. The spec says how many prompts each rank holds
(`split`, e.g. [4], [2, 2] or [1, 3]: the same 4 prompts in the same global order), the
module's settings (the config's spelling), and which prompts fail every rollout. Every rank writes
`rank<r>.json` (global_step, the schedule's clock, ReLIFT counters, low_t per iteration);
rank 0 also writes `grads.pt`, the full gradient of every optimiser step.

The rollouts are canned (an engine that is a pure function of the request), so the same
prompts give the same trajectories whatever the layout; rewards, advantages, old
log-probs, entropy selection, the normaliser and FSDP2 are the real ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from callbacks import PrefixSchedule
from prefix_rft_pl.types import PromptDemoBatch
from tests.helpers import CannedEngine, build_module, items_from


class Record(L.Callback):
    def __init__(self, out: Path):
        self.out, self.grads, self.low = out, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.low.append(pl_module.prefix_low)  # set by PrefixSchedule, which runs first

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = {}
        for name, p in pl_module.policy.named_parameters():  # full_tensor: a collective on every rank
            g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
            grads[name] = g.detach().cpu().clone()
        self.grads.append(grads)

    def on_train_end(self, trainer, pl_module):
        schedule = next(c for c in trainer.callbacks if isinstance(c, PrefixSchedule))
        state = {"global_step": trainer.global_step, "schedule_step": schedule.step, "low_t": self.low,
                 "relift_sft_steps": pl_module.relift_sft_steps, "relift_buffer": len(pl_module.relift_buffer)}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(state))
        if trainer.global_rank == 0:
            torch.save(self.grads, self.out / "grads.pt")


class RankBatches(L.LightningDataModule):
    """Every rank takes its own `split[rank]` prompts of the global batch, at every step."""

    def __init__(self, items, split, steps):
        super().__init__()
        self.items, self.split, self.steps = items, split, steps

    def train_dataloader(self):
        rank = self.trainer.global_rank
        start = sum(self.split[:rank])
        mine = self.items[start:start + self.split[rank]]
        return DataLoader([PromptDemoBatch(mine)] * self.steps, batch_size=None, collate_fn=lambda b: b)


def main(spec_path: str) -> None:
    from transformers import AutoTokenizer

    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    split = spec["split"]
    items = items_from(tokenizer, spec["task_file"], sum(split))
    module = build_module(spec["model_dir"], {"reward": {"workers": 1}}, spec["hparams"])
    module.engine = CannedEngine(tokenizer, items, spec.get("failing", []))
    if len(split) == 1:
        strategy = "auto"
    else:
        from lightning.pytorch.strategies import ModelParallelStrategy

        strategy = ModelParallelStrategy(data_parallel_size=len(split), tensor_parallel_size=1)
    trainer = L.Trainer(max_steps=spec["max_steps"], accelerator="cpu", devices=len(split), strategy=strategy,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False,
                        callbacks=[PrefixSchedule(**spec["schedule"]), Record(out)])
    torch.manual_seed(0)
    trainer.fit(module, datamodule=RankBatches(items, split, spec["iterations"]))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1])
