"""A real Trainer: checkpoint mid-stream, resume, and see every prompt exactly once in order."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from datamodules import PromptDemoDataModule


class RecordUids(L.LightningModule):
    """Trivial module: one parameter, remembers the uids of every batch it trains on."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[str]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append([item.uid for item in batch.items])
        return (self.weight * len(batch)).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tokenizer, files, max_steps, tmp_path, ckpt_path=None, num_workers=0):
    dm = PromptDemoDataModule(str(tokenizer), train_files=files, template="toy", batch_size=3,
                              shuffle_buffer=8, seed=5, num_workers=num_workers)
    module = RecordUids()
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, callbacks=[checkpoints],
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module.seen


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_from_checkpoint_neither_repeats_nor_skips(tiny_model_dir, tmp_path, num_workers):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"problem": f"p{i}", "solution": f"s{i}", "answer": str(i)}) + "\n"
                            for i in range(10)))  # 10 rows, 3 per batch: batches straddle epochs
    reference = fit(tiny_model_dir, str(path), 9, tmp_path / "ref", num_workers=num_workers)
    interrupted = fit(tiny_model_dir, str(path), 5, tmp_path / "run", num_workers=num_workers)
    ckpt = tmp_path / "run" / "ckpt" / "epoch=0-step=3.ckpt"
    resumed = fit(tiny_model_dir, str(path), 9, tmp_path / "run", ckpt_path=str(ckpt), num_workers=num_workers)
    assert interrupted == reference[:5]
    assert interrupted[:3] + resumed == reference
    epoch0 = sum(reference, [])[:10]
    assert len(set(epoch0)) == 10  # every row once per data epoch


class RecordUidsToFile(RecordUids):
    """Same, writing each rank's uids to `<out>/rank<r>.json` (the fit runs in child processes)."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out

    def on_train_end(self):
        with open(f"{self.out}/rank{self.global_rank}.json", "w") as f:
            json.dump(self.seen, f)


def fit_two_ranks(tokenizer, files, max_steps, out, ckpt_path=None):
    out.mkdir(parents=True, exist_ok=True)
    dm = PromptDemoDataModule(str(tokenizer), train_files=files, template="toy", batch_size=2, shuffle_buffer=6, seed=3)
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=2, save_top_k=-1)
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=2, strategy="ddp_fork", logger=False,
                        callbacks=[checkpoints], enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=out)
    trainer.fit(RecordUidsToFile(str(out)), datamodule=dm, ckpt_path=ckpt_path)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_two_rank_resume_restores_each_ranks_position(tiny_model_dir, tmp_path):
    rows = [{"problem": f"p{i}", "solution": f"s{i}", "answer": str(i) if i % 4 else ""} for i in range(16)]
    path = tmp_path / "train.jsonl"  # rows 0, 4, 8, 12 are bad: the ranks' raw positions drift apart
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    reference = fit_two_ranks(tiny_model_dir, str(path), 6, tmp_path / "ref")
    fit_two_ranks(tiny_model_dir, str(path), 3, tmp_path / "run")
    ckpt = tmp_path / "run" / "ckpt" / "epoch=0-step=2.ckpt"
    positions = torch.load(ckpt, weights_only=False)["PromptDemoDataModule"]["positions"]
    resumed = fit_two_ranks(tiny_model_dir, str(path), 6, tmp_path / "run", ckpt_path=str(ckpt))
    for rank in range(2):
        assert reference[rank][:2] + resumed[rank] == reference[rank]
    assert len(positions) == 2 and positions[0] != positions[1]  # each rank got its own back
