"""Data-parallel evaluation: the missing chunks dealt out to N shard processes, one engine each.

The parent plans the missing (benchmark, chunk) work as a one-process run would, deals it
round-robin to the shards (`split_work`), starts one process per shard on its own devices
(`python -m eval_harness.launcher shards/shard<r>.json`; one engine's worth of GPUs each,
or all on CPU), waits for all of them, and the runner folds their sample files into the
usual ones. A chunk keeps its composition and its seed whichever process runs it, so the
merged samples, and every number computed from them, are those of a one-process run.

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
from collections.abc import Sequence
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
    """Generate `work` ((benchmark spec, chunk index) pairs) in `cfg.data_parallel_size` processes."""
    per_shard = cfg.engine.tensor_parallel_size if cfg.engine.kind == "vllm" else 1
    devices = shard_devices(visible_devices(cfg), cfg.data_parallel_size, per_shard)
    folder = out / "shards"
    folder.mkdir(exist_ok=True)
    ranks, commands, envs, logs = [], [], [], []
    for rank, share in enumerate(split_work(work, cfg.data_parallel_size)):
        if not share:
            continue  # fewer missing chunks than shards
        spec = folder / f"shard{rank}.json"
        spec.write_text(json.dumps({"config": asdict(cfg), "model_path": model_path, "shard": rank, "work": share}))
        env = dict(os.environ)
        if devices[rank] is not None:
            env["CUDA_VISIBLE_DEVICES"] = devices[rank]
        ranks.append(rank)
        commands.append([sys.executable, "-m", "eval_harness.launcher", str(spec)])
        envs.append(env)
        logs.append(folder / f"shard{rank}.log")
        print(f"shard {rank}: {len(share)} chunks on {devices[rank] or 'cpu'}, log {logs[-1]}", file=sys.stderr)
    run_shards(ranks, commands, envs, logs)


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


def shard_main(spec_path: str) -> None:
    """One shard: generate its share of the chunks into its own samples files."""
    spec = json.loads(Path(spec_path).read_text())
    cfg = EvalConfig(**spec["config"])
    from eval_harness.runner import generate

    work = [(benchmark, chunk) for benchmark, chunk in spec["work"]]
    generate(cfg, Path(cfg.out), spec["model_path"], work, shard=spec["shard"])


if __name__ == "__main__":
    shard_main(sys.argv[1])
