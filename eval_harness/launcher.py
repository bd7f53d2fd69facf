"""Data-parallel evaluation: the missing chunks dealt out to N shard processes, one engine each.

The parent plans the missing (benchmark, chunk) work as a one-process run would, deals it
round-robin to the shards (`split_work`), writes each shard's share and devices to
`shards/shard<r>.json`, starts the shards (`python -m eval_harness.shard`; one engine's worth
of GPUs each, or all on CPU), waits for all of them, and the runner folds their sample files
into the usual ones. A chunk keeps its composition and its seed whichever process runs it, so
the merged samples, and every number computed from them, are those of a one-process run.

Where the shards run: inside a SLURM job of several tasks (the batch script of
`sbatch --ntasks=N`, or an `salloc` shell), as the N tasks of one `srun` step on this node,
each reading its rank from SLURM_PROCID and checking the world against SLURM_NTASKS;
anywhere else, as N local processes. This module starts processes and never imports the
runner (eval_harness/shard.py is the shard's entry point), so nothing imports in a circle.

A shard that fails does not stop the others: their finished chunks are on disk, the
parent raises an error naming the failed shard(s) with the end of each one's log, and the
same command run again generates only what is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from eval_harness.config import EvalConfig

T = TypeVar("T")
LOG_TAIL_LINES = 20


class ShardError(RuntimeError):
    pass


def split_work(work: Sequence[T], num_shards: int) -> list[list[T]]:
    """Shard r takes items r, r + n, r + 2n, ...: shares differ in length by at most one."""
    return [list(work[r::num_shards]) for r in range(num_shards)]


def shard_devices(visible: Sequence[str], num_shards: int, per_shard: int) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES of each shard: `per_shard` consecutive devices each; None on CPU."""
    if not visible:
        return [None] * num_shards
    need = num_shards * per_shard
    if len(visible) < need:
        raise ValueError(f"data_parallel_size {num_shards} x {per_shard} device(s) per engine needs {need} "
                         f"devices; {len(visible)} visible ({','.join(visible)})")
    return [",".join(visible[r * per_shard:(r + 1) * per_shard]) for r in range(num_shards)]


def visible_devices(cfg: EvalConfig) -> list[str]:
    """The GPUs shards may use; none when the run is on CPU."""
    import torch

    if not torch.cuda.is_available() or (cfg.engine.kind == "hf" and cfg.engine.device == "cpu"):
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def launch_shards(cfg: EvalConfig, out: Path, model_path: str, work: list[tuple[str, int]]) -> None:
    """Generate `work` ((benchmark spec, chunk index) pairs) in `cfg.data_parallel_size` processes:
    the tasks of one `srun` step inside a SLURM job with enough tasks, else local processes."""
    per_shard = cfg.engine.tensor_parallel_size if cfg.engine.kind == "vllm" else 1
    devices = shard_devices(visible_devices(cfg), cfg.data_parallel_size, per_shard)
    folder = out / "shards"
    folder.mkdir(exist_ok=True)
    shares = split_work(work, cfg.data_parallel_size)
    use_srun = srun_tasks(os.environ, cfg.data_parallel_size)
    for rank, share in enumerate(shares):
        spec = {"config": asdict(cfg), "model_path": model_path, "shard": rank, "num_shards": len(shares),
                "devices": devices[rank], "work": share}
        (folder / f"shard{rank}.json").write_text(json.dumps(spec))
        (folder / f"shard{rank}.ok").unlink(missing_ok=True)
        print(f"shard {rank}: {len(share)} chunks on {devices[rank] or 'cpu'}, log {folder / f'shard{rank}.log'}",
              file=sys.stderr)
    if use_srun:
        run_srun_step(folder, len(shares))
        return
    ranks = [rank for rank, share in enumerate(shares) if share]  # fewer missing chunks than shards: fewer processes
    commands = [[sys.executable, "-m", "eval_harness.shard", str(folder / f"shard{rank}.json")] for rank in ranks]
    run_shards(ranks, commands, [dict(os.environ)] * len(ranks), [folder / f"shard{rank}.log" for rank in ranks])


def srun_tasks(env: Mapping[str, str], num_shards: int) -> bool:
    """True inside a SLURM job's batch script (or an salloc shell) whose job has more than one task:
    the shards then run as the tasks of one `srun` step (rank SLURM_PROCID, world SLURM_NTASKS).
    A job of one task runs them as local processes, as outside SLURM."""
    if "SLURM_JOB_ID" not in env:
        return False
    if "SLURM_STEP_ID" in env and int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
        raise ShardError(f"this evaluation runs as task {env.get('SLURM_PROCID')} of a "
                         f"{env['SLURM_STEP_NUM_TASKS']}-task "
                         "srun step: start it once per job (in the batch script, without srun); it starts its "
                         "data-parallel shards with srun itself")
    tasks = int(env.get("SLURM_NTASKS", "1"))
    if tasks == 1 or "SLURM_STEP_ID" in env:
        return False
    if tasks < num_shards:
        raise ShardError(f"data_parallel_size {num_shards} needs {num_shards} SLURM tasks; job "
                         f"{env['SLURM_JOB_ID']} has {tasks} (sbatch --ntasks={num_shards})")
    return True


def run_srun_step(folder: Path, num_shards: int) -> None:
    """The shards as the tasks of one srun step on this node, each logging to shards/shard<r>.log;
    raise naming every shard that did not finish (no shards/shard<r>.ok)."""
    command = ["srun", "--nodes=1", f"--ntasks={num_shards}", "--kill-on-bad-exit=0",
               f"--output={folder}/shard%t.log", sys.executable, "-m", "eval_harness.shard", str(folder)]
    proc = subprocess.Popen(command)
    try:
        code = proc.wait()
    finally:
        stop([proc])
    failed = [f"data-parallel shard {rank} (SLURM task {rank}) failed; end of {folder / f'shard{rank}.log'}:\n"
              f"{tail(folder / f'shard{rank}.log') if (folder / f'shard{rank}.log').is_file() else '(no log)'}"
              for rank in range(num_shards) if not (folder / f"shard{rank}.ok").is_file()]
    if failed or code != 0:
        raise ShardError("\n\n".join(failed or [f"srun exited with code {code}: {' '.join(command)}"]) +
                         "\n\nThe other shards' samples are kept; run the same command again to generate only "
                         "what is missing.")


def run_shards(ranks: list[int], commands: list[list[str]], envs: list[dict], logs: list[Path]) -> None:
    """Run the shard commands side by side, each logging to its file; raise if any failed.

    If this process is interrupted, the shards still running are terminated, never orphaned.
    """
    procs = []
    try:
        for command, env, log in zip(commands, envs, logs):
            with log.open("w") as f:
                procs.append(subprocess.Popen(command, env=env, stdout=f, stderr=subprocess.STDOUT))
        failed = wait_all(ranks, procs, logs)
    finally:
        stop(procs)
    if failed:
        raise ShardError("\n\n".join(failed) + "\n\nThe other shards' samples are kept; run the same "
                         "command again to generate only what is missing.")


def wait_all(ranks: list[int], procs: list[subprocess.Popen], logs: list[Path]) -> list[str]:
    """Wait for every shard; a report per failed one, also printed as soon as it fails."""
    failed, running = [], set(range(len(procs)))
    while running:
        for i in sorted(running):
            code = procs[i].poll()
            if code is None:
                continue
            running.discard(i)
            if code != 0:
                how = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
                failed.append(f"data-parallel shard {ranks[i]} failed ({how}); end of {logs[i]}:\n{tail(logs[i])}")
                print(f"shard {ranks[i]} failed ({how}); the other shards go on", file=sys.stderr)
        time.sleep(0.2)
    return failed


def stop(procs: list[subprocess.Popen], grace_s: float = 30.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
