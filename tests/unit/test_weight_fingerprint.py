"""The exact weight check of prefix_rft_pl.engines.checks against hand-worked numbers, on plain
models and on FSDP2 shards (no vLLM needed)."""

from __future__ import annotations

import os

import pytest
import torch

from prefix_rft_pl.engines.checks import (
    PRIME,
    StaleWeightsError,
    check_engine_weights,
    fingerprint,
    logprob_metrics,
    logprob_mismatch,
    policy_fingerprints,
)
from tests.ranks import WORLD, init_gloo, launch


def test_fingerprint_of_two_floats_by_hand():
    # float32 bits: 1.0 = 0x3F800000, -2.0 = 0xC0000000 (read unsigned); checksums: the sum, and the
    # sum weighted by position + 1, modulo P = 2^31 - 1
    a, b = 0x3F800000, 0xC0000000
    assert fingerprint(torch.tensor([1.0, -2.0]), torch.float32).tolist() == [(a + b) % PRIME, (a + 2 * b) % PRIME]
    # the same elements further into the full tensor (a shard starting at element 10): weights 11 and 12
    shard = fingerprint(torch.tensor([1.0, -2.0]), torch.float32, start=10)
    assert shard.tolist() == [(a + b) % PRIME, (11 * a + 12 * b) % PRIME]


def test_fingerprint_hashes_the_bits_in_the_engine_dtype():
    # bf16 bits of 1.0 = 0x3F80; 1 + 2^-10 rounds to 1.0 in bf16, and is another float32
    assert fingerprint(torch.tensor([1.0]), torch.bfloat16).tolist() == [0x3F80, 0x3F80]
    x = torch.tensor([1.0 + 2**-10, 3.0])
    assert torch.equal(fingerprint(x, torch.bfloat16), fingerprint(torch.tensor([1.0, 3.0]), torch.bfloat16))
    assert not torch.equal(fingerprint(x, torch.float32), fingerprint(torch.tensor([1.0, 3.0]), torch.float32))


def test_fingerprint_sees_one_ulp_and_a_swap_and_adds_over_shards():
    x = torch.randn(7, 5)
    whole = fingerprint(x, torch.float32)
    nudged = x.clone()
    nudged[3, 2] = torch.nextafter(x[3, 2], torch.tensor(float("inf")))
    assert not torch.equal(fingerprint(nudged, torch.float32), whole)
    swapped = x.clone()
    swapped[[0, 1]] = x[[1, 0]]
    assert not torch.equal(fingerprint(swapped, torch.float32), whole)
    shards = fingerprint(x[:4], torch.float32) + fingerprint(x[4:], torch.float32, start=4 * 5)
    assert torch.equal(shards % PRIME, whole)


def test_fingerprint_over_rows_and_chunks_equals_the_definition(monkeypatch):
    import prefix_rft_pl.engines.checks as checks

    x = torch.randn(1000)
    bits = [int(v) & 0xFFFF for v in x.to(torch.bfloat16).view(torch.int16).tolist()]
    expected = [sum(bits) % PRIME, sum(b * (7 + j + 1) for j, b in enumerate(bits)) % PRIME]  # Python integers
    assert fingerprint(x, torch.bfloat16, start=7).tolist() == expected  # one row, padded
    monkeypatch.setattr(checks, "ROW", 16)
    monkeypatch.setattr(checks, "CHUNK", 64)
    assert fingerprint(x, torch.bfloat16, start=7).tolist() == expected  # many rows and chunks, a partial last one


def engine_report(model: torch.nn.Module, dtype: torch.dtype, fused: dict[str, list[str]] | None = None) -> dict:
    """What a synced engine reports, from its own copy: every tensor whole, and columns 0 and 2 of
    the stacked weights `fused` = {engine name: checkpoint names} (e.g. a qkv_proj)."""
    params = dict(model.named_parameters())
    tensors = {name: (tuple(p.shape), tuple(fingerprint(p, dtype).tolist())) for name, p in params.items()}
    columns = {}
    for key, parts in (fused or {}).items():
        block = torch.cat([params[p] for p in parts]).to(dtype)[:, [0, 2]]
        columns[key] = (parts, [0, 2], tuple(block.shape), tuple(fingerprint(block, dtype).tolist()))
    return {"tensors": tensors, "columns": columns}


def test_check_engine_weights_passes_on_the_same_weights_in_bf16_and_names_the_stale_tensor():
    trainer = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    report = engine_report(trainer, torch.bfloat16)
    del report["tensors"]["0.bias"]                    # a tensor the engine does not hold in checkpoint layout
    report["tensors"]["1.bias"] = ((4,), (0, 0))       # another shape: not comparable, skipped
    assert check_engine_weights(trainer, report, torch.bfloat16, step=0) == 2
    with torch.no_grad():
        trainer[1].weight += 0.1                       # one optimiser step the engine did not get
    with pytest.raises(StaleWeightsError, match=r"at step 1 \(rank 0: 1\.weight\)"):
        check_engine_weights(trainer, report, torch.bfloat16, step=1)


def test_check_engine_weights_compares_columns_of_a_fused_layer():
    # q (3 x 4) and k (2 x 4) stacked as the engine's qkv: columns 0 and 2 of the 5 x 4 stack
    trainer = torch.nn.ModuleDict({"q": torch.nn.Linear(4, 3, bias=False), "k": torch.nn.Linear(4, 2, bias=False)})
    report = engine_report(trainer, torch.float32, {"qk.weight": ["q.weight", "k.weight"]})
    report["tensors"] = {}
    assert check_engine_weights(trainer, report, torch.float32, step=0) == 1
    original = trainer["k"].weight[1, 2].item()
    with torch.no_grad():
        trainer["k"].weight[1, 2] += 1.0               # inside a probed column of the second part
    with pytest.raises(StaleWeightsError, match=r"qk\.weight columns \[0, 2\]"):
        check_engine_weights(trainer, report, torch.float32, step=3)
    with torch.no_grad():
        trainer["k"].weight[1, 2] = original           # exactly: (w + 1) - 1 need not be w in float32
        trainer["k"].weight[1, 1] += 1.0               # a column the probe does not read
    assert check_engine_weights(trainer, report, torch.float32, step=3) == 1


def test_check_engine_weights_refuses_an_engine_with_nothing_comparable():
    report = {"tensors": {"other.weight": ((2, 2), (0, 0))}, "columns": {}}
    with pytest.raises(StaleWeightsError, match="cannot be compared"):
        check_engine_weights(torch.nn.Linear(2, 2), report, torch.float32, step=0)


def test_logprob_mismatch_counts_generated_tokens_only():
    # generated gaps 0.1, 0.3, 0.2 (prefix: NaN on the engine side; padding: a huge gap)
    trainer = torch.tensor([[-9.0, -1.0, -2.0], [-0.5, 5.0, 0.0]])
    engine = torch.tensor([[float("nan"), -1.1, -1.7], [-0.7, -5.0, 0.0]])
    generated = torch.tensor([[False, True, True], [True, False, False]])
    stats = logprob_mismatch(trainer, engine, generated)
    assert stats["mean"] == pytest.approx(0.2, abs=1e-6) and stats["max"] == pytest.approx(0.3, abs=1e-6)
    assert stats["p99"] == pytest.approx(0.3, abs=1e-6) and stats["count"] == 3  # nearest rank: ceil(2.97) = 3rd


def test_logprob_p99_is_the_nearest_rank():
    # gaps 0.01, 0.02, ..., 2.00: the 99th percentile by nearest rank is the 198th, 1.98; the max 2.00
    gaps = torch.arange(1, 201, dtype=torch.float64) / 100
    stats = logprob_mismatch(gaps[None], torch.zeros(1, 200, dtype=torch.float64), torch.ones(1, 200, dtype=torch.bool))
    assert stats["p99"] == pytest.approx(1.98) and stats["max"] == pytest.approx(2.0)
    assert stats["mean"] == pytest.approx(1.005)


def test_logprob_metrics_on_one_process_are_the_three_statistics():
    x = torch.zeros(1, 2)
    out = logprob_metrics(x, x - torch.tensor([[0.5, 1.5]]), torch.ones(1, 2, dtype=torch.bool))
    assert out == pytest.approx({"rollout/logprob_diff_mean": 1.0, "rollout/logprob_diff_p99": 1.5,
                                 "rollout/logprob_diff_max": 1.5})


BLOCKS = {"0.weight": (["0.weight"], None), "1.weight": (["1.weight"], None), "1.bias": (["1.bias"], None),
          "stacked columns": (["0.weight", "1.weight"], [0, 3])}  # embedding (7 x 5) on top of linear (3 x 5)


def test_logprob_metrics_over_ranks_by_hand(monkeypatch):
    import prefix_rft_pl.engines.checks as checks

    # this rank: gaps 0.5, 1.5; the other: 3 tokens, mean 0.1, p99 0.2, max 0.2
    other = {"mean": 0.1, "p99": 0.2, "max": 0.2, "count": 3.0}
    monkeypatch.setattr(checks, "gather_from_ranks", lambda value: [value, other])
    x = torch.zeros(1, 2)
    out = logprob_metrics(x, x - torch.tensor([[0.5, 1.5]]), torch.ones(1, 2, dtype=torch.bool))
    assert out == pytest.approx({
        "rollout/logprob_diff_mean": (2 * 1.0 + 3 * 0.1) / 5,  # token-weighted
        "rollout/logprob_diff_p99": 1.5, "rollout/logprob_diff_max": 1.5,
        "rollout/logprob_diff_mean_rank0": 1.0, "rollout/logprob_diff_p99_rank0": 1.5,
        "rollout/logprob_diff_max_rank0": 1.5,
        "rollout/logprob_diff_mean_rank1": 0.1, "rollout/logprob_diff_p99_rank1": 0.2,
        "rollout/logprob_diff_max_rank1": 0.2})


def _fingerprint_on_rank(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    init_gloo(rank, port)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Embedding(7, 5), torch.nn.Linear(5, 3))  # 7 rows: uneven shards
        mesh = init_device_mesh("cpu", (WORLD,))
        fully_shard(model, mesh=mesh, mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16))
        assert all(hasattr(p, "full_tensor") for p in model.parameters())
        torch.save(policy_fingerprints(model, BLOCKS, torch.bfloat16), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp2_shards_give_the_fingerprint_of_the_full_tensors(tmp_path):
    launch(_fingerprint_on_rank, str(tmp_path), timeout=300)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(7, 5), torch.nn.Linear(5, 3))
    expected = policy_fingerprints(model, BLOCKS, torch.bfloat16)  # one process, whole tensors
    stacked = torch.cat([model[0].weight, model[1].weight]).to(torch.bfloat16)[:, [0, 3]]
    assert expected["stacked columns"] == tuple(fingerprint(stacked, torch.bfloat16).tolist())
    assert expected["1.bias"] == tuple(fingerprint(model[1].bias, torch.bfloat16).tolist())
    for rank in range(2):
        assert torch.load(tmp_path / f"rank{rank}.pt") == expected


def test_check_engine_weights_without_a_sample_compares_nothing():
    assert check_engine_weights(torch.nn.Linear(2, 2), None, torch.float32, step=0) == 0


def test_per_rank_engines_refuse_tensor_parallelism():
    import torch.distributed as dist

    from prefix_rft_pl.engines.vllm import VLLMEngine

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:  # refused before vLLM is imported or the model read
        with pytest.raises(ValueError, match="tensor_parallel_size=2 with one engine per data-parallel rank"):
            VLLMEngine("no/such/model", tensor_parallel_size=2, rank=0)
    finally:
        dist.destroy_process_group()
