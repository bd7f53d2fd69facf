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


@pytest.mark.parametrize("kind", ["vllm", "hf"])
def test_the_module_adds_the_sync_for_a_vllm_engine_when_an_overlay_dropped_it(kind, tiny_model_dir):
    # a row overlay that sets trainer.callbacks replaces the list; the sync must come back by itself
    import lightning as L

    from callbacks import EntropyStats
    from prefix_rft_pl.run_control import RunControl
    from tests.helpers import build_module

    module = build_module(str(tiny_model_dir), {"engine": {"kind": kind}, "rollout": {"num_hybrid": 0}})
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, callbacks=[EntropyStats()])
    module.trainer = trainer
    added = module.configure_callbacks()
    assert any(isinstance(c, RunControl) for c in added)
    assert any(isinstance(c, VLLMWeightSync) for c in added) == (kind == "vllm")
    placed = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                       callbacks=[EntropyStats(), VLLMWeightSync()])
    module.trainer = placed
    assert not any(isinstance(c, VLLMWeightSync) for c in module.configure_callbacks())  # one where the config put it
