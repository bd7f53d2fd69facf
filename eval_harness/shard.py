"""One data-parallel shard of an evaluation (started by eval_harness/launcher.py):

    python -m eval_harness.shard shards/shard<r>.json   a local shard process, rank r
    python -m eval_harness.shard shards/                 a task of an srun step: rank SLURM_PROCID

It generates its share of the chunks into its own samples files, on the devices its spec names,
and writes shards/shard<r>.ok once done (how the parent tells which tasks of a step finished).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path


def spec_path(arg: str, env: Mapping[str, str]) -> Path:
    """The spec of this shard: the file named, or in a folder the one of this SLURM task, whose
    world (SLURM_NTASKS) must be the number of shards the parent planned."""
    path = Path(arg)
    if not path.is_dir():
        return path
    if "SLURM_PROCID" not in env:
        raise SystemExit(f"{path} is a folder: the shard's rank comes from SLURM_PROCID, which is not set "
                         "(run it under srun, or name shards/shard<r>.json)")
    path = path / f"shard{env['SLURM_PROCID']}.json"
    planned = json.loads(path.read_text())["num_shards"]
    if int(env.get("SLURM_NTASKS", "0")) != planned:
        raise SystemExit(f"{path}: planned for {planned} shards, but this srun step has SLURM_NTASKS="
                         f"{env.get('SLURM_NTASKS')}")
    return path


def main(arg: str) -> None:
    path = spec_path(arg, os.environ)
    spec = json.loads(path.read_text())
    if spec.get("devices") is not None:  # before anything touches CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = spec["devices"]
    from eval_harness.config import EvalConfig
    from eval_harness.runner import generate

    if Path(arg).is_dir():
        print(f"shard {spec['shard']} of {spec['num_shards']}: SLURM task {os.environ['SLURM_PROCID']} of step "
              f"{os.environ.get('SLURM_JOB_ID')}.{os.environ.get('SLURM_STEP_ID')}", file=sys.stderr, flush=True)
    cfg = EvalConfig(**spec["config"])
    work = [(benchmark, chunk) for benchmark, chunk in spec["work"]]
    if work:
        generate(cfg, Path(cfg.out), spec["model_path"], work, shard=spec["shard"])
    path.with_suffix(".ok").touch()


if __name__ == "__main__":
    main(sys.argv[1])
