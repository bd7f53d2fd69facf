"""The update does not depend on the data-parallel layout (FSDP2, 2 CPU ranks, gloo).

The same 4 prompts and the same (canned) rollouts give the same gradient whether one rank
holds all of them, two ranks hold 2 each, or the split is uneven (1 and 3: the ranks run
different numbers of micro-batches, the entropy selection gathers rows of different
counts, and the normaliser must count trajectories over all ranks). ReLIFT with all-fail
prompts on one rank only decides its SFT step collectively: no hang, the same optimiser
steps on both ranks, and neither `max_steps` nor the prefix schedule counts the SFT step.

Each run is a subprocess (tests/integration/dp_worker.py) under a timeout: a layout bug
under FSDP2 is more often a hang than a wrong number.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import merge

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "integration" / "dp_worker.py"
CONSTANT_HALF = {"kind": "constant", "low_start": 0.5, "high": 0.5}  # every prefix ratio 0.5, any layout


def run(out: Path, tiny_model_dir, toy_task_files, split, hparams, max_steps=1, iterations=1,
        schedule=CONSTANT_HALF, failing=()) -> Path:
    out.mkdir(parents=True)
    spec = {"out": str(out), "model_dir": str(tiny_model_dir), "task_file": str(toy_task_files["train"]),
            "split": split, "hparams": hparams, "max_steps": max_steps, "iterations": iterations,
            "schedule": schedule, "failing": list(failing)}
    (out / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    # own session: on a hang, every rank (Lightning starts rank 1 as a child) is killed with it
    proc = subprocess.Popen([sys.executable, str(WORKER), str(out / "spec.json")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"split {split}: training hung (no exit in 300 s)")
    assert proc.returncode == 0, log[-8000:]
    return out


HPARAMS = {"rollout": {"group_size": 4, "num_hybrid": 1, "max_response_tokens": 48},
           "update": {"micro_batch_size": 4}, "prefix": {"token_keep": 0.2}, "optim": {"lr": 1e-3}}


@pytest.fixture(scope="module")
def one_rank_grads(tmp_path_factory, tiny_model_dir, toy_task_files):
    out = run(tmp_path_factory.mktemp("dp") / "one", tiny_model_dir, toy_task_files, [4], HPARAMS)
    return torch.load(out / "grads.pt")[0]


@pytest.mark.parametrize("split", [[2, 2], [1, 3]], ids=["even", "uneven"])
def test_two_ranks_give_the_one_rank_gradient(tmp_path, tiny_model_dir, toy_task_files, one_rank_grads, split):
    grads = torch.load(run(tmp_path / "two", tiny_model_dir, toy_task_files, split, HPARAMS) / "grads.pt")[0]
    assert sum(float(g.abs().sum()) for g in one_rank_grads.values()) > 0  # a real signal to compare
    for name, reference in one_rank_grads.items():
        torch.testing.assert_close(grads[name], reference, rtol=1e-4, atol=1e-7, msg=lambda m: f"{name}: {m}")


def test_relift_on_two_ranks_decides_the_sft_step_together(tmp_path, tiny_model_dir, toy_task_files):
    # rank 1's two prompts fail every rollout; the global batch is 4 prompts, so the shared
    # buffer holds a batch after iterations 2 and 4: two SFT steps, on both ranks at once
    hparams = merge(HPARAMS, {"rollout": {"num_hybrid": 0}, "relift": {}})
    cosine = {"kind": "cosine", "low_start": 0.95, "low_end": 0.05, "high": 0.95, "steps": 4}
    out = run(tmp_path / "run", tiny_model_dir, toy_task_files, [2, 2], hparams, max_steps=4, iterations=8,
              schedule=cosine, failing=("2", "3"))
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    state = ranks[0]
    assert state["global_step"] == 4 and state["schedule_step"] == 4  # 4 iterations, SFT steps not counted
    assert state["relift_sft_steps"] == 2 and state["relift_buffer"] == 0
    from prefix_rft_pl.schedule import SCHEDULES

    assert state["low_t"] == pytest.approx([SCHEDULES["cosine"](i, 0.95, 0.05, 4, 0) for i in range(4)])
