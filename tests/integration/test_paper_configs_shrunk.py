"""The paper configs themselves, shrunk to 2 CPU ranks.

Each test loads `configs/<model>/prefix_rft.yaml` as it is and overrides only what a CPU
cannot hold: the policy (a tiny random model of the same architecture family, written with
`save_pretrained`: Qwen2 with the Qwen2.5 tokenizer for the Qwen configs, Llama for the
LLaMA one), accelerator and devices (CPU, 2 ranks), lengths and batch sizes, the vLLM KV
cache and context (and `enforce_eager`), the number of steps, where logs and checkpoints
go. Everything else is the config's: FSDP2 (ModelParallelStrategy), float32 masters with
bf16 compute, a bf16 vLLM engine on every rank, VLLMWeightSync with its exact fingerprint
check, the prefix schedule, the template, the `openr1` data layout (a small parquet with
LUFFY's nested columns, made here) and checkpointing.

A run takes 3 steps, resumes from its step-2 checkpoint and finishes; its HF export loads
into a vLLM engine. The rows of the paper's table and the newer hybrids (configs/rows/) run on
the 1.5B config for 2 rollout batches each.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.filterwarnings("ignore")]
pytest.importorskip("vllm")

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600
PAPER = {"qwen2.5-math-7b": "qwen2", "qwen2.5-math-1.5b": "qwen2", "llama-3.1-8b": "llama"}
ROWS = ["sft", "rft", "rl_sft_loss", "luffy", "relift", "uft", "chord", "srft", "hpt"]
ENGINE_SHRINK = {"max_model_len": 512, "kv_cache_gib": 0.25, "enforce_eager": True}


@pytest.fixture(scope="module")
def openr1_parquet(tmp_path_factory) -> Path:
    """A small training file in LUFFY's layout: `prompt` a list of {role, content} messages
    (system, then user), `target` a list holding one assistant message, nested `reward_model`.
    Demonstrations are short, so that a 95% prefix holds the whole \\boxed{} answer and the
    hybrid earns reward: advantages are non-zero and the weights move."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for i in range(16):
        a, b = i % 7 + 1, i % 5 + 2
        rows.append({
            "data_source": "toy_openr1",
            "prompt": [{"content": "Your task is to solve the problem.", "role": "system"},
                       {"content": f"What is {a} + {b}?", "role": "user"}],
            "target": [{"content": f"\\boxed{{{a + b}}}", "role": "assistant"}],
            "ability": "math",
            "reward_model": {"ground_truth": str(a + b), "style": "rule"},
            "extra_info": {"index": i, "split": "train"},
        })
    path = tmp_path_factory.mktemp("openr1") / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="module")
def policies(tmp_path_factory, tiny_qwen25_dir) -> dict[str, Path]:
    from prefix_rft_pl.toy.model import save_tiny_model

    llama = save_tiny_model(tmp_path_factory.mktemp("tiny_llama"), architecture="llama", max_position_embeddings=1024)
    return {"qwen2": tiny_qwen25_dir, "llama": llama}


def shrink(name: str, run_dir: Path, policy: Path, data: Path, steps: int, rows: tuple[str, ...] = ()) -> Path:
    """The overlay that shrinks configs/<name>/prefix_rft.yaml (after `rows`) to 2 CPU ranks."""
    config = yaml.safe_load((ROOT / "configs" / name / "prefix_rft.yaml").read_text())
    trainer = config["trainer"]
    for row in rows:  # a row that sets callbacks replaces the list: keep what it says
        trainer = {**trainer,
                   **yaml.safe_load((ROOT / "configs" / "rows" / f"{row}.yaml").read_text()).get("trainer", {})}
    callbacks = []
    for callback in trainer["callbacks"]:
        if callback["class_path"].endswith("ModelCheckpoint"):  # every step, into the run's directory
            callback = {**callback, "init_args": {"dirpath": str(run_dir / "ckpt"), "every_n_train_steps": 1,
                                                  "save_top_k": -1}}
        callbacks.append(callback)
    strategy = trainer["strategy"]
    overlay = {
        "trainer": {
            "accelerator": "cpu", "devices": 2, "max_steps": steps, "default_root_dir": str(run_dir),
            "strategy": {**strategy, "init_args": {**strategy["init_args"], "data_parallel_size": 2}},
            "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                        "init_args": {"save_dir": str(run_dir), "name": "run"}}],
            "callbacks": callbacks,
        },
        "model": {
            "policy": str(policy), "rollout": {"max_response_tokens": 24}, "reward": {"workers": 1},
            "engine": {**config["model"]["engine"], **ENGINE_SHRINK},
        },
        "data": {"init_args": {"train_files": str(data), "batch_size": 1}},  # x G = 8 trajectories per rank
    }
    path = run_dir / "shrink.yaml"
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(overlay))
    return path


def fit(name: str, run_dir: Path, policy: Path, data: Path, steps: int, rows=(), extra=()) -> Path:
    configs = [f"configs/{name}/prefix_rft.yaml", *(f"configs/rows/{r}.yaml" for r in rows),
               str(shrink(name, run_dir, policy, data, steps, tuple(rows)))]
    cmd = [sys.executable, "-m", "prefix_rft_pl", "fit", *(a for c in configs for a in ("--config", c)), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own session: a hang kills every rank
    try:
        log, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"{name} {rows}: no exit in {TIMEOUT_S} s\n{log[-6000:]}")
    (run_dir / "log.txt").write_text(log)
    assert proc.returncode == 0, f"{name} {rows}:\n{log[-10000:]}"
    return run_dir / "run"


def metric(log_dir: Path, key: str) -> list[float]:
    return [float(r[key]) for r in csv.DictReader((log_dir / "metrics.csv").open()) if r.get(key)]


def export_loads_into_vllm(export: Path) -> list[int]:
    """Greedy ids of a few tokens from a fresh VLLMEngine on `export` (its own process)."""
    code = ("import json, sys\n"
            "from prefix_rft_pl.engines.vllm import VLLMEngine\n"
            "from prefix_rft_pl.types import GenerationRequest\n"
            f"engine = VLLMEngine({str(export)!r}, dtype='bfloat16', max_model_len=256, kv_cache_gib=0.25,"
            " enforce_eager=True)\n"
            "out = engine.greedy([GenerationRequest([1, 2, 3], 4)])\n"
            "engine.close()\n"
            "print('IDS', json.dumps(out[0].token_ids))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(proc.stdout.split("IDS", 1)[1])


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_config_trains_resumes_and_exports_on_two_ranks(tmp_path, name, policies, openr1_parquet):
    policy = policies[PAPER[name]]
    first = fit(name, tmp_path / "first", policy, openr1_parquet, steps=3)
    assert len(metric(first, "train/loss")) == 3
    assert max(metric(first, "train/grad_norm")) > 0  # the weights moved, so a stale engine would be caught
    assert len(metric(first, "rollout/weights_verified")) == 3  # exact sync check passed at every step
    for rank in (0, 1):
        assert len(metric(first, f"rollout/logprob_diff_mean_rank{rank}")) == 3
    for step in (1, 2, 3):
        assert (tmp_path / "first" / "ckpt" / f"epoch=0-step={step}.ckpt" / "meta.pt").exists()

    ckpt = tmp_path / "first" / "ckpt" / "epoch=0-step=2.ckpt"
    resumed = fit(name, tmp_path / "resumed", policy, openr1_parquet, steps=3, extra=["--ckpt_path", str(ckpt)])
    from prefix_rft_pl.schedule import SCHEDULES

    config = yaml.safe_load((ROOT / "configs" / name / "prefix_rft.yaml").read_text())
    schedule = next(c for c in config["trainer"]["callbacks"]
                    if c["class_path"].endswith("PrefixSchedule"))["init_args"]
    length = schedule.get("steps") or 3  # null: the run's length (max_steps 3, one optimiser step per batch)
    low = SCHEDULES[schedule["kind"]](2, schedule["low_start"], schedule["low_end"], length, 0)
    assert metric(resumed, "train/low_t") == pytest.approx([low])  # one more step, the schedule at its third value
    export = resumed / "hf_export"
    assert (export / "config.json").exists()
    assert len(export_loads_into_vllm(export)) == 4


@pytest.mark.parametrize("row", ROWS)
def test_paper_rows_run_on_two_ranks(tmp_path, row, policies, openr1_parquet):
    # 2 rollout batches, so that the second samples from synced weights (max_steps counts optimiser steps)
    keys = yaml.safe_load((ROOT / "configs" / "rows" / f"{row}.yaml").read_text()).get("model", {}).get("update", {})
    per_batch = keys.get("mini_batches", 1) * keys.get("ppo_epochs", 1)
    log_dir = fit("qwen2.5-math-1.5b", tmp_path, policies["qwen2"], openr1_parquet, steps=2 * per_batch, rows=(row,))
    assert len(metric(log_dir, "train/loss")) == 2
