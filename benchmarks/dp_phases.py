"""Time per phase of a training step: 2 data-parallel ranks (FSDP2, one vLLM engine each)
beside 1 rank, on the same total batch.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.dp_phases [--steps 8] [--prompts 8]

The toy config from the toy base (built if missing, as the main job does), with the paper's
numerics: float32 master weights, bf16 compute (FSDP2 mixed precision on 2 ranks; autocast,
`bf16-mixed`, on 1 rank), a bf16 vLLM engine per rank, VLLMWeightSync with its exact
fingerprint check. 1 rank takes `--prompts` prompts per step; 2 ranks take half each.
Each run is a separate process; the first 2 steps are dropped as warm-up. Prints the mean
seconds per phase (as the module logs them: rollout (the engine-side fingerprint included),
reward, logprob, weight check (trainer side), update, weight sync;
on 2 ranks, rank 0's, which the others wait for at the first collective) and the ratio.
On this 2-core machine the 2 ranks share the cores that 1 rank has alone, so the figure
measures the layout's overhead (collectives, per-rank engines), not a speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.step_time import ensure_toy_base, timed_toy_fit

PHASES = ["time/rollout_s", "time/reward_s", "time/logprob_s", "time/weight_check_s", "time/update_s",
          "rollout/weight_sync_s"]
ENGINE = {"kind": "vllm", "dtype": "bfloat16", "max_model_len": 512, "kv_cache_gib": 0.5, "enforce_eager": True}


def run(name: str, ranks: int, args, tmp: Path) -> dict[str, float]:
    trainer = {"max_steps": args.steps, "limit_val_batches": 0, "enable_checkpointing": False,
               "enable_progress_bar": False, "devices": ranks,
               "callbacks": [{"class_path": "callbacks.PrefixSchedule"}, {"class_path": "callbacks.VLLMWeightSync"}]}
    model = {"policy": "artifacts/toy/base", "engine": ENGINE, "reward": {"workers": 1}}
    if ranks > 1:
        trainer["strategy"] = {"class_path": "lightning.pytorch.strategies.ModelParallelStrategy",
                               "init_args": {"data_parallel_size": ranks, "tensor_parallel_size": 1}}
        model["precision"] = {"compute": "bfloat16", "reduce": "float32"}
    else:
        trainer["precision"] = "bf16-mixed"
    overlay = {"trainer": trainer, "model": model,
               "data": {"init_args": {"train_files": "artifacts/toy/task/train.jsonl",
                                      "batch_size": args.prompts // ranks}}}
    return timed_toy_fit(name, overlay, PHASES, tmp, args.verbose)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step, all ranks together")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    ensure_toy_base()
    with tempfile.TemporaryDirectory() as tmp:
        one = run("one_rank", 1, args, Path(tmp))
        two = run("two_ranks", 2, args, Path(tmp))
    print(f"{args.prompts} prompts x 8 rollouts per step in all, {args.steps - 2} timed steps (mean seconds), "
          "bf16 compute over float32 masters, bf16 vLLM engine per rank")
    print(f"{'phase':<24}{'1 rank':>10}{'2 ranks':>10}{'ratio':>8}")
    for key in PHASES + ["step", "wall (whole run)"]:
        print(f"{key:<24}{one[key]:>10.3f}{two[key]:>10.3f}{two[key] / one[key]:>8.2f}")


if __name__ == "__main__":
    main()
