"""One vLLM engine per rank under FSDP2: Lightning's ModelParallelStrategy on 2 CPU processes
(gloo), the toy config with the vLLM engine (bf16, beside the float32 trainer) and
`VLLMWeightSync`.

Each run is a subprocess (`python -m prefix_rft_pl fit ...`, which Lightning relaunches
once per rank) started in a session of its own, so that any process it leaves behind
(a rank, a reward worker) can be found afterwards by its session id.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.ranks import init_gloo, launch

pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.filterwarnings("ignore")]
pytest.importorskip("vllm")

ROOT = Path(__file__).resolve().parents[2]
FSDP2 = {"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
         "init_args": {"data_parallel_size": 2, "tensor_parallel_size": 1}}
ENGINE = {"dtype": "bfloat16", "max_model_len": 256, "kv_cache_gib": 0.25, "enforce_eager": True}
TIMEOUT_S = 420


def run_fit(run_dir: Path, tiny_model_dir, toy_task_files, steps: int, callbacks=()):
    """The toy config with one vLLM engine per rank, for `steps` steps on 2 processes.

    A constant schedule of whole demonstrations but their last token: the untrained policy's
    hybrid rollouts carry the right answer, so advantages and updates are non-zero and an
    engine left behind would show. Returns the finished process and its session id."""
    overlay = {
        "trainer": {
            "strategy": FSDP2, "devices": 2, "max_steps": steps, "limit_val_batches": 0,
            "enable_checkpointing": False, "default_root_dir": str(run_dir),
            "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                        "init_args": {"save_dir": str(run_dir), "name": "run"}}],
            "callbacks": [{"class_path": "callbacks.PrefixSchedule",
                           "init_args": {"kind": "constant", "low_start": 1.0, "high": 1.0}},
                          {"class_path": "callbacks.VLLMWeightSync"}, *callbacks],
        },
        "model": {"engine": {"kind": "vllm", **ENGINE}, "rollout": {"group_size": 4, "max_response_tokens": 48},
                  "update": {"micro_batch_size": 8}, "reward": {"workers": 1}},
        "data": {"init_args": {"batch_size": 2}},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    cmd = [sys.executable, "-m", "prefix_rft_pl", "fit", "--config", "configs/toy/prefix_rft.yaml",
           "--config", str(run_dir / "overlay.yaml"), "--model.policy", str(tiny_model_dir),
           "--data.init_args.train_files", str(toy_task_files["train"]),
           "--data.init_args.val_files", str(toy_task_files["heldout_easy"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        pytest.fail(f"the run hung for {TIMEOUT_S} s:\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), proc.pid


def leftover_processes(session: int, wait_s: float = 10.0) -> list[str]:
    """Command lines of processes still alive in `session`, after up to `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == session and fields[0] != "Z":  # field 6 of stat: the session id
                    alive.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
            except (OSError, IndexError, ValueError):
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def metric(log_dir: Path, key: str) -> list[float]:
    rows = csv.DictReader((log_dir / "metrics.csv").open())
    return [float(r[key]) for r in rows if r.get(key)]


def _engine_on_rank(rank: int, port: int, model_dir: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    from prefix_rft_pl.engines.base import SamplingConfig
    from prefix_rft_pl.engines.vllm import VLLMEngine
    from prefix_rft_pl.types import GenerationRequest

    os.environ["OMP_NUM_THREADS"] = "1"
    init_gloo(rank, port)
    try:
        engine = VLLMEngine(model_dir, dtype="float32", seed=0, max_model_len=256, kv_cache_gib=0.25,
                            enforce_eager=True, rank=rank)  # every rank builds its engine here: a collective
        backend = engine.llm.llm_engine.vllm_config.parallel_config.distributed_executor_backend
        rollouts = engine.generate([GenerationRequest([10, 20, 30], 12, num_samples=4)], SamplingConfig())
        engine.close()
        total = torch.tensor([rank + 1])
        dist.all_reduce(total)  # the trainer's process group still works after the engine is gone
        torch.save({"backend": backend, "tokens": [r.token_ids for r in rollouts], "total": int(total)},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()  # raised "Invalid process group specified" when vLLM's groups were left


def test_per_rank_engines_sample_apart_and_leave_the_process_group_working(tmp_path, tiny_model_dir):
    import torch

    launch(_engine_on_rank, str(tiny_model_dir), str(tmp_path), timeout=300)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0]["tokens"] != ranks[1]["tokens"]  # the same prompt, seeds 0 and 1
    assert [r["backend"] for r in ranks] == ["external_launcher"] * 2 and [r["total"] for r in ranks] == [3, 3]


def test_every_rank_runs_its_own_engine_in_sync_and_exits_cleanly(tmp_path, tiny_model_dir, toy_task_files):
    result, session = run_fit(tmp_path, tiny_model_dir, toy_task_files, steps=3)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-8000:]
    assert "Invalid process group" not in result.stderr
    assert leftover_processes(session) == []
    log_dir = tmp_path / "run"
    assert max(metric(log_dir, "train/grad_norm")) > 0  # the policy moved, so a stale engine would show
    # the exact weight check ran before every step's update, on both ranks (it raises on a mismatch on any)
    assert metric(log_dir, "rollout/weights_verified") == [17.0] * 3  # see test_vllm_fingerprint.py
    assert len(metric(log_dir, "rollout/weight_sync_s")) == 3
    for rank in (0, 1):
        for stat in ("mean", "p99", "max"):
            values = metric(log_dir, f"rollout/logprob_diff_{stat}_rank{rank}")
            assert len(values) == 3 and all(v > 0 for v in values), (rank, stat, values)  # bf16 vs float32
    # each rank sampled its own prompts with its own seed
    assert metric(log_dir, "rollout/logprob_diff_mean_rank0") != metric(log_dir, "rollout/logprob_diff_mean_rank1")
    assert metric(log_dir, "rollout/logprob_diff_max") == [
        max(a, b) for a, b in zip(metric(log_dir, "rollout/logprob_diff_max_rank0"),
                                  metric(log_dir, "rollout/logprob_diff_max_rank1"))]


@pytest.mark.parametrize("rank", [0, 1])  # rank 0 kills the others when it fails; it watches them otherwise
def test_an_exception_on_one_rank_ends_both_and_names_the_rank(tmp_path, tiny_model_dir, toy_task_files, rank):
    fault = {"class_path": "tests.integration.rank_faults.RaiseOnRank", "init_args": {"rank": rank, "step": 1}}
    result, session = run_fit(tmp_path, tiny_model_dir, toy_task_files, steps=3, callbacks=[fault])
    assert result.returncode != 0
    assert f"injected failure\n[rank{rank}]: raised on rank {rank} of 2" in result.stderr, result.stderr[-6000:]
    assert leftover_processes(session) == []


def test_an_engine_behind_on_one_rank_stops_every_rank_at_step_1_naming_it(tmp_path, tiny_model_dir, toy_task_files):
    stale = {"class_path": "tests.integration.rank_faults.StaleEngineOnRank", "init_args": {"rank": 1}}
    result, session = run_fit(tmp_path, tiny_model_dir, toy_task_files, steps=3, callbacks=[stale])
    assert result.returncode != 0
    # every rank raises this error at step 1 (the check is collective); which ranks print it before
    # Lightning's launcher ends the others when the first one exits varies from run to run
    message = ("StaleWeightsError: the rollout engine's weights differ from the trainer's at step 1 "
               "(rank 1: model.embed_tokens.weight)")
    assert message in result.stderr, result.stderr[-6000:]
    assert leftover_processes(session) == []

