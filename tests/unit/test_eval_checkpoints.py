"""Checkpoint resolution: HF dir, hub id, Lightning .ckpt and FSDP2 sharded directory all
end as an HF directory with the trained weights; anything else is a clear error."""

from __future__ import annotations

import pytest
import torch

from eval_harness.checkpoints import CheckpointError, resolve_checkpoint


def trained_state(model_dir) -> dict[str, torch.Tensor]:
    """The tiny model's weights, perturbed, under this framework's `policy.` prefix."""
    from safetensors.torch import load_file

    weights = load_file(str(model_dir / "model.safetensors"))
    return {f"policy.{k}": v + 1.0 for k, v in weights.items()}


def exported_weights(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(f"{path}/model.safetensors")


def assert_matches(path: str, state: dict[str, torch.Tensor]) -> None:
    weights = exported_weights(path)
    assert weights.keys() == {k.removeprefix("policy.") for k in state}
    for key, value in state.items():
        torch.testing.assert_close(weights[key.removeprefix("policy.")], value, rtol=0, atol=0)


def test_hf_dir_and_hub_id_pass_through(tiny_model_dir):
    assert resolve_checkpoint(str(tiny_model_dir)) == (str(tiny_model_dir), None)
    assert resolve_checkpoint("Qwen/Qwen2.5-Math-7B") == ("Qwen/Qwen2.5-Math-7B", None)


def test_lightning_ckpt_is_exported_once(tiny_model_dir, tmp_path):
    state = trained_state(tiny_model_dir)
    ckpt = tmp_path / "step=10.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"policy": str(tiny_model_dir)}, "global_step": 10}, ckpt)
    path, base = resolve_checkpoint(str(ckpt))
    assert path == str(tmp_path / "step=10.ckpt.hf") and base == str(tiny_model_dir)
    assert_matches(path, state)
    marker_mtime = (tmp_path / "step=10.ckpt.hf" / ".export_complete").stat().st_mtime_ns
    assert resolve_checkpoint(str(ckpt)) == (path, base)   # unchanged content: the cache, not a new export
    assert (tmp_path / "step=10.ckpt.hf" / ".export_complete").stat().st_mtime_ns == marker_mtime


def test_sharded_checkpoint_is_consolidated(tiny_model_dir, tmp_path):
    import torch.distributed.checkpoint as dcp

    state = trained_state(tiny_model_dir)
    shard_dir = tmp_path / "last.ckpt"   # Lightning's ModelParallelStrategy: a directory
    shard_dir.mkdir()
    dcp.save({"state_dict": state, "optimizer_0": {"step": torch.tensor(3)}}, checkpoint_id=shard_dir)
    torch.save({"hyper_parameters": {"policy": str(tiny_model_dir)}, "global_step": 3}, shard_dir / "meta.pt")
    path, base = resolve_checkpoint(str(shard_dir))
    assert path == str(tmp_path / "last.ckpt.hf") and base == str(tiny_model_dir)
    assert_matches(path, state)


def test_unknown_path_says_what_it_found(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="containing: notes.txt"):
        resolve_checkpoint(str(tmp_path))
    with pytest.raises(CheckpointError, match="suffix .txt"):
        resolve_checkpoint(str(tmp_path / "notes.txt"))
    with pytest.raises(CheckpointError, match="missing/model: no such file or directory"):
        resolve_checkpoint(str(tmp_path / "missing" / "model"))
