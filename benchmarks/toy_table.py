"""The paper's table on the toy: every row of SPEC 3 trained from the toy base, two seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/toy_table.py --seeds 0 1 --steps 60
    # or one process per seed, then one table:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/toy_table.py --seeds 0 --steps 60 --out benchmarks/toy_table_seed0.json &
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/toy_table.py --seeds 1 --steps 60 --out benchmarks/toy_table_seed1.json
    .venv/bin/python benchmarks/toy_table.py --merge benchmarks/toy_table_seed0.json benchmarks/toy_table_seed1.json

Per row and seed: a fit of configs/toy/prefix_rft.yaml + the row's overlay (SFT+RFT: the RFT
row from that seed's SFT export), then, on 100 held-out problems of each split, avg@k and
pass@k (k = 8 samples at temperature 0.6, math-verify graded), and the fraction of hard (`&`)
training prompts whose step produced a non-zero learning signal (some trajectory with a
non-zero advantage, or a demonstration loss: SFT, UFT's prefix SFT, RL w/ SFT loss, ReLIFT's
SFT on all-fail prompts). Prints a Markdown table: mean +- spread (half the range) over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning as L
import yaml

ROWS = ["sft", "rft", "sft_rft", "rl_sft_loss", "luffy", "relift", "uft", "prefix_rft"]
SFT_ROWS = {"sft", "uft", "rl_sft_loss"}  # a demonstration loss on every prompt


class HardSignal(L.Callback):
    """Counts hard (`&`) prompts and those whose step gave a non-zero learning signal."""

    def __init__(self, out: str, always: bool = False, relift: bool = False):
        self.out, self.always, self.relift = out, always, relift
        self.hard = self.signal = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        for item, adv in zip(batch.items, outputs["advantages"]):
            if "&" in pl_module.tokenizer.decode(item.prompt_ids):
                self.hard += 1
                self.signal += bool(self.always or (adv != 0).any() or self.relift)
        Path(self.out).write_text(json.dumps({"hard": self.hard, "signal": self.signal}))


def fit(row: str, seed: int, steps: int, policy: str, tmp: Path) -> Path:
    name = f"{row}_s{seed}"
    signal = tmp / f"{name}.signal.json"
    overlays = ["--config", "configs/toy/prefix_rft.yaml"]
    row_file = {"sft_rft": "rft", "prefix_rft": None}.get(row, row)
    if row_file:
        overlays += ["--config", f"configs/toy/rows/{row_file}.yaml"]
    extra = {"trainer": {"max_steps": steps, "limit_val_batches": 0,
                         "enable_progress_bar": False,
                         "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                    "init_args": {"save_dir": str(tmp / name)}}},
             "seed_everything": seed, "model": {"policy": policy, "seed": seed}}
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(extra))
    callback = json.dumps({"class_path": "benchmarks.toy_table.HardSignal",
                           "init_args": {"out": str(signal), "always": row in SFT_ROWS, "relift": row == "relift"}})
    subprocess.run([sys.executable, "-m", "prefix_rft_pl", "fit", *overlays, "--config", str(tmp / f"{name}.yaml"),
                    "--data.init_args.train_files", "artifacts/toy/task/train.jsonl", "--trainer.callbacks+", callback],
                   check=True, capture_output=True)
    return next((tmp / name).glob("**/hf_export"))


def evaluate(policy: Path, split: str, k: int, n: int = 100) -> tuple[float, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eval_harness.metrics import pass_at_k
    from prefix_rft_pl.engines import HFEngine, SamplingConfig
    from prefix_rft_pl.rewards import MathVerifyReward
    from prefix_rft_pl.toy.task import PROMPT_TEMPLATE
    from prefix_rft_pl.types import GenerationRequest

    rows = [json.loads(line) for line in open(f"artifacts/toy/task/heldout_{split}.jsonl")][:n]
    tokenizer = AutoTokenizer.from_pretrained(str(policy))
    engine = HFEngine(AutoModelForCausalLM.from_pretrained(str(policy)), tokenizer)
    requests = [GenerationRequest(tokenizer(PROMPT_TEMPLATE.format(problem=r["problem"]))["input_ids"], 40, [], k)
                for r in rows]
    rollouts = engine.generate(requests, SamplingConfig(temperature=0.6))
    reward = MathVerifyReward(num_workers=1)
    result = reward([tokenizer.decode(r.token_ids, skip_special_tokens=True) for r in rollouts],
                    [[r["answer"]] for r in rows for _ in range(k)])
    reward.close()
    correct = [sum(result.rewards[i * k:(i + 1) * k]) for i in range(len(rows))]
    return statistics.mean(c / k for c in correct), statistics.mean(pass_at_k(k, int(c), k) for c in correct)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--rows", nargs="+", default=ROWS)
    parser.add_argument("--out", default="benchmarks/toy_table.json")
    parser.add_argument("--merge", nargs="+", help="print one table from these json outputs and exit")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge)
    results: dict[str, list[dict]] = {}
    base = Path("artifacts/toy/base")
    results["base"] = [dict(zip(["easy_avg", "easy_pass"], evaluate(base, "easy", args.k)),
                            **dict(zip(["hard_avg", "hard_pass"], evaluate(base, "hard", args.k))), signal=float("nan"))]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            exports = {}
            for row in args.rows:
                policy = str(exports["sft"]) if row == "sft_rft" else str(base)
                exports[row] = fit(row, seed, args.steps, policy, Path(tmp))
                easy, hard = evaluate(exports[row], "easy", args.k), evaluate(exports[row], "hard", args.k)
                counts = json.loads((Path(tmp) / f"{row}_s{seed}.signal.json").read_text())
                results.setdefault(row, []).append({"easy_avg": easy[0], "easy_pass": easy[1], "hard_avg": hard[0],
                                                    "hard_pass": hard[1], "signal": counts["signal"] / max(counts["hard"], 1)})
                print(row, seed, results[row][-1], flush=True)
                Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print_table(results, args.steps, args.seeds, args.k)


def merge(paths: list[str]) -> None:
    """One table from the json files of runs made one seed at a time (in parallel processes)."""
    results: dict[str, list[dict]] = {}
    runs = [json.loads(Path(p).read_text()) for p in paths]
    for run in runs:
        for row, values in run["results"].items():
            if row == "base" and "base" in results:
                continue  # the base is the same model in every run
            results.setdefault(row, []).extend(values)
    seeds = [s for run in runs for s in run["args"]["seeds"]]
    print_table(results, runs[0]["args"]["steps"], seeds, runs[0]["args"]["k"])


def print_table(results: dict[str, list[dict]], steps: int, seeds: list[int], k: int) -> None:
    print(f"\n{steps} steps per run, seeds {seeds}, k = {k} samples at T = 0.6, 100 problems per split;"
          " mean +- half-range over seeds")
    print(f"| row | easy avg@{k} | easy pass@{k} | hard avg@{k} | hard pass@{k} | hard prompts with signal |")
    print("|---|---|---|---|---|---|")
    for row, runs in results.items():
        cells = []
        for key in ["easy_avg", "easy_pass", "hard_avg", "hard_pass", "signal"]:
            values = [100 * r[key] for r in runs]
            spread = (max(values) - min(values)) / 2
            cells.append(f"{statistics.mean(values):.1f} +- {spread:.1f}")
        print(f"| {row} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
