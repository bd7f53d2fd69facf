"""Untrusted and stale checkpoints: a crafted .ckpt is refused without running its code (by
`eval_harness run --ckpt` and by Lightning's `fit(ckpt_path=...)`), the framework's own types
load with weights_only=True, an overwritten last.ckpt is exported again, a typo'd local path
is an error naming it, a relative base resolves from the checkpoint's folder, and a failed
up-front check leaves no protocol.json."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eval_harness.checkpoints import CheckpointError, resolve_checkpoint
from prefix_rft_pl.safe_load import UnsafeCheckpointError, load_checkpoint
from prefix_rft_pl.types import PromptItem

REPO = Path(__file__).resolve().parents[2]


class WritesAFile:
    """Unpickling this runs `open(path, "w")`: what a crafted checkpoint does with os.system."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted_checkpoint(tmp_path: Path, model_dir) -> tuple[Path, Path]:
    marker = tmp_path / "pwned.txt"
    ckpt = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"policy": str(model_dir)}, "x": WritesAFile(str(marker))}, ckpt)
    return ckpt, marker


def test_crafted_checkpoint_is_refused_and_runs_nothing(tiny_model_dir, tmp_path):
    ckpt, marker = crafted_checkpoint(tmp_path, tiny_model_dir)
    with pytest.raises(UnsafeCheckpointError, match="trust_pickle"):
        resolve_checkpoint(str(ckpt), trust_pickle=False)
    assert not marker.exists()


@pytest.mark.slow
def test_eval_harness_run_refuses_the_crafted_checkpoint(tiny_model_dir, tmp_path):
    ckpt, marker = crafted_checkpoint(tmp_path, tiny_model_dir)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("PREFIX_RFT_TRUST_PICKLE", None)
    proc = subprocess.run([sys.executable, "-m", "eval_harness", "run", "--ckpt", str(ckpt), "--engine.kind", "hf",
                           "--benchmarks", "aime24", "--out", str(tmp_path / "out")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "refused to unpickle" in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "out" / "protocol.json").exists()   # nothing left that refuses the next run


def test_framework_types_load_with_weights_only(tmp_path):
    item = PromptItem("u1", [1, 2], [[3]], ["5"])
    torch.save({"state_dict": {"policy.w": torch.ones(2)}, "relift": {"buffer": [item], "sft_steps": 1}},
               tmp_path / "a.ckpt")
    assert load_checkpoint(tmp_path / "a.ckpt")["relift"]["buffer"] == [item]


def test_trusted_legacy_pickle_is_an_explicit_opt_in(tmp_path):
    torch.save({"state_dict": {}, "extra": Path("/x")}, tmp_path / "legacy.ckpt")  # PosixPath: not allow-listed
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(tmp_path / "legacy.ckpt")
    assert load_checkpoint(tmp_path / "legacy.ckpt", trust_pickle=True)["extra"] == Path("/x")


class TinyModule:
    """Built lazily: a LightningModule with one weight (Lightning imported only here)."""

    @staticmethod
    def make():
        import lightning

        class Tiny(lightning.LightningModule):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Linear(1, 1)

            def training_step(self, batch, batch_idx):
                return self.w(batch[0]).sum()

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Tiny()


def test_fit_ckpt_path_refuses_the_crafted_checkpoint(tiny_model_dir, tmp_path):
    """Lightning 2.6.6 passes weights_only=None to torch.load, which torch >= 2.6 reads as True."""
    import lightning

    ckpt, marker = crafted_checkpoint(tmp_path, tiny_model_dir)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 1)), batch_size=1)
    trainer = lightning.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(Exception, match="Weights only load failed|weights_only"):
        trainer.fit(TinyModule.make(), data, ckpt_path=str(ckpt))
    assert not marker.exists()


def test_overwritten_checkpoint_is_exported_again(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    ckpt = tmp_path / "last.ckpt"
    for shift in (1.0, 2.0):   # save_last overwrites last.ckpt in place
        torch.save({"state_dict": {f"policy.{k}": v + shift for k, v in weights.items()},
                    "hyper_parameters": {"policy": str(tiny_model_dir)}}, ckpt)
        os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + int(shift * 1e9)))
        path, _ = resolve_checkpoint(str(ckpt))
        exported = load_file(f"{path}/model.safetensors")
        key = next(iter(weights))
        torch.testing.assert_close(exported[key], weights[key] + shift, rtol=0, atol=0)


def test_local_looking_path_that_does_not_exist_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"runs/last.ckpt: no such file"):
        resolve_checkpoint("runs/last.ckpt")
    assert resolve_checkpoint("Qwen/Qwen2.5-Math-7B") == ("Qwen/Qwen2.5-Math-7B", None)


def test_relative_base_resolves_from_the_checkpoints_folder(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "models" / "base")
    (run / "checkpoints").mkdir()
    from safetensors.torch import load_file

    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    torch.save({"state_dict": {f"policy.{k}": v for k, v in weights.items()},
                "hyper_parameters": {"policy": "models/base"}}, run / "checkpoints" / "last.ckpt")
    monkeypatch.chdir(tmp_path)   # evaluated from elsewhere
    path, base = resolve_checkpoint(str(run / "checkpoints" / "last.ckpt"))
    assert base == str(run / "models" / "base") and Path(path).is_dir()
