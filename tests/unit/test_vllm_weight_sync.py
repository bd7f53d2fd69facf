"""The weight stream of prefix_rft_pl.weight_sync, without vLLM: plain models and FSDP2 shards."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from prefix_rft_pl.weight_sync import VLLMWeightSync, stream_full_tensors
from tests.ranks import WORLD, init_gloo, launch


@pytest.mark.slow
def test_importing_engines_and_weight_sync_does_not_import_vllm():
    code = ("import sys, prefix_rft_pl.engines, prefix_rft_pl.engines.vllm, prefix_rft_pl.engines.checks, "
            "prefix_rft_pl.weight_sync; assert 'vllm' not in sys.modules, 'vllm imported'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_stream_full_tensors_names_values_and_cast():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    streamed = dict(stream_full_tensors(model, torch.bfloat16))
    assert list(streamed) == [name for name, _ in model.named_parameters()]
    for name, param in model.named_parameters():
        assert streamed[name].dtype == torch.bfloat16 and not streamed[name].requires_grad
        torch.testing.assert_close(streamed[name], param.detach().to(torch.bfloat16))


def test_callback_leaves_engines_that_share_weights_alone():
    from types import SimpleNamespace

    from prefix_rft_pl.engines.hf import HFEngine

    engine = HFEngine.__new__(HFEngine)  # the check is on the type only
    module = SimpleNamespace(policy=torch.nn.Linear(2, 2), engine=engine,
                             log=lambda *a, **k: pytest.fail("nothing to sync, nothing to log"))
    VLLMWeightSync().on_train_batch_end(None, module, None, None, 0)


def _gather_on_rank(rank: int, port: int, model_dir: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM

    init_gloo(rank, port)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        mesh = init_device_mesh("cpu", (WORLD,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        assert any(hasattr(p, "full_tensor") for p in model.parameters())
        streamed = {name: t.clone() for name, t in stream_full_tensors(model, torch.bfloat16)}
        torch.save(streamed, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_stream_full_tensors_gathers_fsdp2_shards_on_every_rank(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    launch(_gather_on_rank, str(tiny_model_dir), str(tmp_path), timeout=300)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    expected = {name: p.detach().to(torch.bfloat16) for name, p in reference.named_parameters()}
    for rank in range(2):
        streamed = torch.load(tmp_path / f"rank{rank}.pt")
        assert list(streamed) == list(expected)
        for name, tensor in expected.items():
            assert type(streamed[name]) is torch.Tensor and streamed[name].shape == tensor.shape
            torch.testing.assert_close(streamed[name], tensor, rtol=0, atol=0)


def test_a_vllm_engine_without_the_sync_callback_is_refused(monkeypatch):
    # a row overlay that sets trainer.callbacks replaces the list; losing the sync must not go unnoticed
    import lightning as L

    import prefix_rft_pl.weight_sync as weight_sync
    from callbacks import EntropyStats

    monkeypatch.setattr(weight_sync, "needs_weights", lambda engine: engine == "vllm")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, callbacks=[EntropyStats()])
    with pytest.raises(ValueError, match="callbacks.VLLMWeightSync"):
        weight_sync.require_weight_sync(trainer, "vllm")
    weight_sync.require_weight_sync(trainer, "hf")  # an engine on the live policy needs nothing
    with_sync = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                          callbacks=[weight_sync.VLLMWeightSync()])
    weight_sync.require_weight_sync(with_sync, "vllm")
