"""Step time of TRL's GRPOTrainer beside this project's RFT row and Prefix-RFT, on the same work.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.trl_compare [--repeats 1] [--no-vllm]

Needs the `bench` extra (TRL, pinned): `pip install -c constraints.txt -e ".[bench]"`.

Same work for all: the toy base (`artifacts/toy/base`, built if missing, as the main job
does), the toy task's train prompts rendered with the toy template (`Q: {problem}\\nA: `),
16 prompts x 8 rollouts per step, at most 40 response tokens, sampling at temperature 1,
learning rate 1e-4 (constant), AdamW, gradient clipping at 1.0, float32, Dr. GRPO (no std
scaling, no KL, the constant normaliser), one optimiser step per rollout batch, Hugging
Face `generate` for the rollouts.

- TRL: `GRPOTrainer` with `loss_type="dr_grpo"`, `scale_rewards="none"`, `beta=0`,
  `num_iterations=1`, 128 completions per optimiser step in one forward (no gradient
  accumulation, so TRL skips its old-log-prob pass), in this process. Its reward is this
  project's own `MathVerifyReward` (last \\boxed{} checked against the answer by
  math-verify, 2 worker processes) wrapped as a TRL reward function: the same grader.
- This project: `configs/toy/prefix_rft.yaml` (Prefix-RFT) and that plus
  `configs/rows/rft.yaml` (RFT row), each in a process of its own through
  `benchmarks.step_time.timed_toy_fit`, with the config's callbacks (prefix schedule,
  entropy statistics; no checkpoints, no validation) and, with `--vllm`, the vLLM engine
  (CPU build, float32) and its weight sync.

A step is timed from the end of the previous optimiser step to the end of this one (the
data loader, logging and callbacks included, as for TRL); the first 3 steps are warm-up,
the next 17 are timed and their median is reported. With `--repeats R` the runs go round
R times, interleaved (the machine is shared: interleaving spreads the noise evenly), and
each figure is the median of the R per-run medians.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import yaml

from benchmarks.step_time import ensure_toy_base, timed_toy_fit

WARMUP, TIMED = 3, 17
PROMPTS, GROUP, MAX_TOKENS, LR = 16, 8, 40, 1e-4
PHASES = ["time/step_s", "time/rollout_s", "time/logprob_s", "time/update_s", "train/update_rows"]
CONFIG, RFT_ROW = Path("configs/toy/prefix_rft.yaml"), Path("configs/rows/rft.yaml")
VLLM_OPTIONS = {"dtype": "float32", "max_model_len": 512, "kv_cache_gib": 1}  # as benchmarks/step_time.py
TARGETS = [("Prefix-RFT (hf) / TRL (hf)", "Prefix-RFT (hf)", "TRL (hf)", 0.85),
           ("RFT (hf) / TRL (hf)", "RFT (hf)", "TRL (hf)", 0.75),
           ("Prefix-RFT (hf) / RFT (hf)", "Prefix-RFT (hf)", "RFT (hf)", 1.0),
           ("Prefix-RFT (vllm) / RFT (vllm)", "Prefix-RFT (vllm)", "RFT (vllm)", 1.0),
           ("Prefix all rows / RFT all rows", "Prefix all rows (hf)", "RFT all rows (hf)", 1.0),
           ("RFT all rows / TRL (hf)", "RFT all rows (hf)", "TRL (hf)", 0.75)]


class StepTimer(L.Callback):
    """Logs `time/step_s`: wall seconds from the end of the previous training batch (or the
    start of training) to the end of this one."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        pl_module.log("time/step_s", now - self.last, on_step=True, on_epoch=False, batch_size=1)
        self.last = now


def merged(base: dict, overlay: dict) -> dict:
    """`overlay` over `base`, group by group: a row's `rollout: {num_hybrid: 0}` keeps the other rollout keys."""
    return {**base, **{k: merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                       for k, v in overlay.items()}}


def project_overlay(row: bool, engine: str, all_rows: bool = False) -> dict:
    """The toy config's callbacks (less checkpointing) + the step timer; the RFT row's model keys;
    with `all_rows`, every row in the update (`model.update.skip_rows_without_gradient: false`)."""
    callbacks = [c for c in yaml.safe_load(CONFIG.read_text())["trainer"]["callbacks"]
                 if not c["class_path"].endswith("ModelCheckpoint")]
    callbacks.append({"class_path": "benchmarks.trl_compare.StepTimer"})
    model = {"policy": "artifacts/toy/base", "engine": {"kind": engine},
             "rollout": {"max_response_tokens": MAX_TOKENS, "group_size": GROUP}, "optim": {"lr": LR},
             "update": {"ppo_epochs": 1, "mini_batches": 1, "skip_rows_without_gradient": not all_rows}}
    if engine == "vllm":
        callbacks.append({"class_path": "callbacks.VLLMWeightSync"})
        model["engine"] |= VLLM_OPTIONS
    if row:
        model = merged(model, yaml.safe_load(RFT_ROW.read_text())["model"])
    return {"trainer": {"max_steps": WARMUP + TIMED, "limit_val_batches": 0, "enable_checkpointing": False,
                        "enable_progress_bar": False, "callbacks": callbacks},
            "model": model,
            "data": {"init_args": {"train_files": "artifacts/toy/task/train.jsonl", "batch_size": PROMPTS}}}


def run_project(name: str, row: bool, engine: str, tmp: Path, verbose: bool,
                all_rows: bool = False) -> dict[str, float]:
    return timed_toy_fit(name, project_overlay(row, engine, all_rows), PHASES, tmp, verbose, WARMUP, statistics.median)


class _MathVerifyForTRL:
    """The project's math-verify reward as a TRL reward function (TRL passes the dataset's
    `answer` column as a keyword argument)."""

    __name__ = "math_verify"

    def __init__(self):
        from prefix_rft_pl.rewards import MathVerifyReward

        self.reward = MathVerifyReward(num_workers=2, timeout_s=2.0)  # the module's defaults

    def __call__(self, completions, answer, **kwargs) -> list[float]:
        return self.reward(list(completions), [[a] for a in answer]).rewards


def run_trl(tmp: Path, verbose: bool) -> dict[str, float]:
    """TRL's GRPOTrainer on the same work, in this process; the median step (as above)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from datamodules.templates import TEMPLATES

    class Ends(TrainerCallback):
        ends: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.ends = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    rows = [json.loads(line) for line in Path("artifacts/toy/task/train.jsonl").open()]
    dataset = Dataset.from_list([{"prompt": TEMPLATES["toy"].format(problem=r["problem"]), "answer": r["answer"]}
                                 for r in rows])
    config = GRPOConfig(
        output_dir=str(tmp / "trl"), seed=0, use_cpu=True, bf16=False, gradient_checkpointing=False,
        per_device_train_batch_size=PROMPTS * GROUP, gradient_accumulation_steps=1, num_generations=GROUP,
        max_completion_length=MAX_TOKENS, temperature=1.0, top_p=1.0, learning_rate=LR, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, loss_type="dr_grpo", scale_rewards="none", beta=0.0,
        num_iterations=1, epsilon=0.2, max_steps=WARMUP + TIMED, logging_steps=1, report_to="none",
        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, use_vllm=False, log_completions=False)
    reward = _MathVerifyForTRL()
    timer = Ends()
    model = AutoModelForCausalLM.from_pretrained("artifacts/toy/base", dtype=torch.float32)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=AutoTokenizer.from_pretrained("artifacts/toy/base"), callbacks=[timer])
    try:
        with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):  # its log lines
            trainer.train()
    finally:
        reward.reward.close()
    steps = [b - a for a, b in zip(timer.ends, timer.ends[1:])][WARMUP:]
    return {"time/step_s": statistics.median(steps)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all runs, interleaved")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM engine runs")
    parser.add_argument("--all-rows", action="store_true",
                        help="also both rows with every row in the update (HF generation, "
                             "model.update.skip_rows_without_gradient: false): what leaving out the rows without "
                             "gradient buys")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    ensure_toy_base()
    runs = {"TRL (hf)": lambda tmp: run_trl(tmp, args.verbose),
            "RFT (hf)": lambda tmp: run_project("rft_hf", True, "hf", tmp, args.verbose),
            "Prefix-RFT (hf)": lambda tmp: run_project("prefix_hf", False, "hf", tmp, args.verbose)}
    if not args.no_vllm:
        runs |= {"RFT (vllm)": lambda tmp: run_project("rft_vllm", True, "vllm", tmp, args.verbose),
                 "Prefix-RFT (vllm)": lambda tmp: run_project("prefix_vllm", False, "vllm", tmp, args.verbose)}
    if args.all_rows:
        runs |= {"RFT all rows (hf)": lambda tmp: run_project("rft_all", True, "hf", tmp, args.verbose, True),
                 "Prefix all rows (hf)": lambda tmp: run_project("prefix_all", False, "hf", tmp, args.verbose, True)}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            with tempfile.TemporaryDirectory() as tmp:
                results[name].append(fn(Path(tmp)))
    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in results.items()}
    report(median, args.repeats)


def report(median: dict[str, dict[str, float]], repeats: int) -> None:
    import trl

    print(f"TRL {trl.__version__} GRPOTrainer vs this project: toy base, {PROMPTS} prompts x {GROUP} rollouts, "
          f"{MAX_TOKENS} tokens, lr {LR:g}, Dr. GRPO, 1 optimiser step per batch, float32, CPU")
    print(f"median whole-step seconds over {TIMED} steps after {WARMUP} warm-up steps"
          + (f", median of {repeats} interleaved runs" if repeats > 1 else ""))
    print(f"{'run':<22}{'s/step':>8}{'rollout':>9}{'logprob':>9}{'update':>8}{'rows':>7}{'ms/row':>8}")
    for name, m in median.items():
        phases = "".join(f"{m[k]:>{w}.3f}" if k in m else f"{'-':>{w}}" for k, w in zip(PHASES[1:4], (9, 9, 8)))
        rows = m.get("train/update_rows", 1.0) * PROMPTS * GROUP  # trajectories in the update (TRL: all)
        per_row = f"{1000 * m['time/update_s'] / rows:>8.2f}" if "time/update_s" in m and rows else f"{'-':>8}"
        print(f"{name:<22}{m['time/step_s']:>8.3f}{phases}{rows:>7.0f}{per_row}")
    print("rows: trajectories in the update (median; a row whose every token has advantage 0 adds nothing and "
          "is left out); ms/row: update time per such row")
    print(f"{'ratio':<32}{'value':>7}{'target':>8}")
    for label, num, den, target in TARGETS:
        if num in median and den in median:
            value = median[num]["time/step_s"] / median[den]["time/step_s"]
            verdict = "met" if value <= target else "NOT met"
            print(f"{label:<32}{value:>7.2f}{'<= ' + format(target, '.2f'):>9}  {verdict}")


if __name__ == "__main__":
    main()
