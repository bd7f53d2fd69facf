"""Time of a Prefix-RFT step against a plain RFT step on the same prompts (toy config).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/step_time.py [--engine vllm|hf] [--steps 12]

Both runs start from the toy base (built if missing, as the main job does) with the same
seed, so they see the same prompts in the same order; the only difference is
`model.rollout.num_hybrid` (1 vs 0): the hybrid rollout replaces an ordinary one. Each run is a
separate process; the first 2 steps are dropped as warm-up. Prints the mean per-phase
times from each run's metrics.csv and the ratio of whole steps (goal: at most 1.05).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PHASES = ["time/rollout_s", "time/reward_s", "time/logprob_s", "time/update_s"]


def ensure_toy_base() -> None:
    """Build the toy task and base (as the main job does) unless they are there."""
    if not Path("artifacts/toy/base/config.json").exists():
        from prefix_rft_pl.toy.__main__ import ensure_base

        ensure_base(Path("artifacts/toy"), "configs/toy/sft_base.yaml")


def timed_toy_fit(name: str, overlay: dict, phases: list[str], tmp: Path, verbose: bool = False,
                  warmup: int = 2, stat=statistics.mean) -> dict[str, float]:
    """Fit configs/toy/prefix_rft.yaml + `overlay` in a process of its own (CSV logs under tmp/name),
    through `python -m prefix_rft_pl`.

    Returns `stat` (default: the mean) of each of `phases` over the logged steps after `warmup`
    warm-up steps (0 for a phase the run never logged), the sum of its `time/` phases ("step")
    and the whole run's wall seconds ("wall (whole run)").
    """
    overlay = {**overlay, "trainer": {**overlay.get("trainer", {}), "logger": {
        "class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp / name)}}}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(overlay))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prefix_rft_pl", "fit", "--config", "configs/toy/prefix_rft.yaml",
                    "--config", str(path)], check=True, capture_output=not verbose)
    wall = time.perf_counter() - start
    rows = list(csv.DictReader(next((tmp / name).glob("**/metrics.csv")).open()))
    steps = [r for r in rows if r.get("time/rollout_s")][warmup:]
    values = {k: [float(r[k]) for r in steps if r.get(k)] for k in phases}
    out = {k: stat(v) if v else 0.0 for k, v in values.items()}  # a phase never run (skipped) costs 0
    out["step"] = sum(out[k] for k in phases if k.startswith("time/"))
    out["wall (whole run)"] = wall
    return out


def run(name: str, num_hybrid: int, args, tmp: Path) -> dict[str, float]:
    overlay = {
        "trainer": {"max_steps": args.steps, "limit_val_batches": 0, "enable_checkpointing": False,
                    "enable_progress_bar": False,
                    "callbacks": [{"class_path": "callbacks.VLLMWeightSync"}] if args.engine == "vllm" else []},
        "model": {"policy": "artifacts/toy/base", "rollout": {"num_hybrid": num_hybrid},
                  "engine": {"kind": "vllm", "dtype": "float32", "max_model_len": 512, "kv_cache_gib": 1}
                  if args.engine == "vllm" else {"kind": "hf"}},
        "data": {"init_args": {"train_files": "artifacts/toy/task/train.jsonl"}},
    }
    return timed_toy_fit(name, overlay, PHASES, tmp, args.verbose)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="vllm", choices=["vllm", "hf"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    ensure_toy_base()
    with tempfile.TemporaryDirectory() as tmp:
        prefix = run("prefix_rft", 1, args, Path(tmp))
        rft = run("rft", 0, args, Path(tmp))
    print(f"engine={args.engine}, 16 prompts x 8 rollouts, {args.steps - 2} timed steps each (mean seconds)")
    print(f"{'phase':<16}{'Prefix-RFT':>12}{'RFT':>10}{'ratio':>8}")
    for key in PHASES + ["step"]:
        print(f"{key:<16}{prefix[key]:>12.3f}{rft[key]:>10.3f}{prefix[key] / rft[key]:>8.2f}")


if __name__ == "__main__":
    main()
