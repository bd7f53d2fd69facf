"""FSDP2 sharding on 2 CPU processes (gloo), without Lightning: `shard_policy` +
`logprobs_from_model` give the same log-probs, entropies and gradients as the unsharded
model (lm_head tied or not, with and without activation checkpointing); `HFEngine.generate`
with different budgets per rank ends (synced_gpus) instead of hanging; the bitsandbytes
8-bit AdamW steps DTensor parameters like it steps the unsharded ones.

Workers run in spawned processes (the test process never joins a process group) and
assert there; the test checks their exit codes, with a timeout against hangs.
"""

from __future__ import annotations

import pytest
import torch

from tests.ranks import WORLD, init_gloo, launch

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


def _init(rank: int, port: int):
    from torch.distributed.device_mesh import init_device_mesh

    torch.set_num_threads(1)
    init_gloo(rank, port)
    return init_device_mesh("cpu", (WORLD,), mesh_dim_names=("data_parallel",))


def _tiny_model(model_dir: str, tied: bool):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    config.tie_word_embeddings = tied
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    return model.train()


def _batch(n: int = 4, t: int = 12):
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, 250, (n, t), generator=gen)
    attention_mask = torch.ones(n, t, dtype=torch.long)
    attention_mask[0, :3] = 0  # one left-padded row
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids, attention_mask, position_ids, torch.roll(input_ids, -1, 1)


def _logprobs(model, rows, batch, loss_scale):
    """Old log-probs and entropies (no grad) of `rows`, then the backward of loss_scale x
    their token-mean log-prob loss."""
    from prefix_rft_pl.update.logprobs import logprobs_from_model

    input_ids, attention_mask, position_ids, targets = (x[rows] for x in batch)
    with torch.no_grad():
        old, entropy = logprobs_from_model(model, input_ids, attention_mask, position_ids, targets, 1.0, 7)
    logprobs, _ = logprobs_from_model(model, input_ids, attention_mask, position_ids, targets, 1.0, 7, False)
    torch.testing.assert_close(logprobs.detach(), old, rtol=0, atol=1e-6)
    (-(logprobs * attention_mask).sum() / attention_mask.sum() * loss_scale).backward()
    return old, entropy


def _parity_worker(rank, port, model_dir, tied, checkpointing):
    from prefix_rft_pl.distributed import full_state_dict, shard_policy

    mesh = _init(rank, port)
    reference, model = _tiny_model(model_dir, tied), _tiny_model(model_dir, tied)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    shard_policy(model, mesh)
    batch = _batch()
    halves = [slice(2 * r, 2 * r + 2) for r in range(WORLD)]  # rank r holds rows halves[r]
    for _ in range(2):  # twice: the root is gathered again after the first backward's reshard
        model.zero_grad(set_to_none=True)
        reference.zero_grad(set_to_none=True)
        # FSDP2 averages the ranks' gradients: the reference takes the mean of the halves' losses
        ref = [_logprobs(reference, rows, batch, loss_scale=1 / WORLD) for rows in halves]
        old, entropy = _logprobs(model, halves[rank], batch, loss_scale=1.0)
        torch.testing.assert_close(old, ref[rank][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(entropy, ref[rank][1], rtol=0, atol=1e-5)
        for name, param in model.named_parameters():
            assert type(param).__name__ == "DTensor", name
            torch.testing.assert_close(param.grad.full_tensor(), reference.get_parameter(name).grad,
                                       rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
    state = full_state_dict(model)
    if rank == 0:
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(state[name], value, rtol=0, atol=0)


@pytest.mark.parametrize("tied,checkpointing", [(False, False), (True, False), (True, True)])
def test_sharded_logprobs_and_gradients_match_unsharded(tiny_model_dir, tied, checkpointing):
    launch(_parity_worker, str(tiny_model_dir), tied, checkpointing)


def _adamw8bit_worker(rank, port, model_dir, ckpt_dir):
    """Two sharded 8-bit AdamW steps equal two unsharded ones; the state survives a DCP
    save/load (as Lightning's ModelParallelStrategy does it) and the next step matches."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    from prefix_rft_pl.distributed import shard_policy
    from prefix_rft_pl.optim import build_optimizer

    mesh = _init(rank, port)
    reference, model, resumed = (_tiny_model(model_dir, False) for _ in range(3))
    for m in (model, resumed):
        shard_policy(m, mesh)
    optimizers = [build_optimizer("adamw8bit", m.parameters(), 1e-2, 0.01) for m in (reference, model, resumed)]
    batch, halves = _batch(), [slice(0, 2), slice(2, 4)]

    def step(m, opt, ranks):
        for rows in ranks:
            _logprobs(m, rows, batch, loss_scale=1 / len(ranks))
        opt.step()
        opt.zero_grad(set_to_none=True)

    def assert_same(m):
        for name, param in m.named_parameters():
            torch.testing.assert_close(param.full_tensor(), reference.get_parameter(name), rtol=0, atol=1e-6,
                                       msg=lambda msg: f"{name}: {msg}")

    for _ in range(2):
        step(reference, optimizers[0], halves)
        step(model, optimizers[1], [halves[rank]])
    assert optimizers[1].state[model.lm_head.weight]["state1"].dtype == torch.uint8  # 8-bit, on the shard
    assert_same(model)

    saved = get_optimizer_state_dict(model, optimizers[1])
    dcp.save({"optimizer": saved}, checkpoint_id=ckpt_dir)
    resumed.load_state_dict(model.state_dict())
    template = {"optimizer": get_optimizer_state_dict(resumed, optimizers[2])}
    dcp.load(template, checkpoint_id=ckpt_dir)
    set_optimizer_state_dict(resumed, optimizers[2], template["optimizer"])
    step(reference, optimizers[0], halves)
    step(resumed, optimizers[2], [halves[rank]])
    assert_same(resumed)


def test_adamw8bit_on_sharded_parameters_matches_unsharded_and_checkpoints(tiny_model_dir, tmp_path):
    launch(_adamw8bit_worker, str(tiny_model_dir), str(tmp_path / "optim"))


def _generate_worker(rank, port, model_dir):
    """Different budgets per rank: the rank done first keeps stepping (synced_gpus)."""
    from transformers import AutoTokenizer

    from prefix_rft_pl.distributed import shard_policy
    from prefix_rft_pl.engines.base import SamplingConfig
    from prefix_rft_pl.engines.hf import HFEngine
    from prefix_rft_pl.types import GenerationRequest

    mesh = _init(rank, port)
    model = _tiny_model(model_dir, False)
    shard_policy(model, mesh)
    engine = HFEngine(model, AutoTokenizer.from_pretrained(model_dir))
    budget = [2, 24][rank]
    for temperature in (0.0, 1.0):
        rollouts = engine.generate([GenerationRequest([5, 6, 7], budget, num_samples=2)], SamplingConfig(temperature))
        assert all(len(r.token_ids) <= budget for r in rollouts) and len(rollouts) == 2
    assert model.training  # generate switches to eval and back


def test_hf_generate_with_different_budgets_per_rank_does_not_hang(tiny_model_dir):
    launch(_generate_worker, str(tiny_model_dir), timeout=90)
