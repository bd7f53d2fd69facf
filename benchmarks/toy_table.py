"""The paper's table on the toy, made fair: every row of SPEC 3 trained from the toy base with
the same budget of rollout batches, its learning rate chosen from one grid on a validation
split held apart from the reported splits, several seeds, and an out-of-distribution split.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.toy_table --steps 60 --seeds 0 1 2 \\
        --lrs 3e-5 1e-4 3e-4 --workers 2

writes benchmarks/toy_table.json (every run), benchmarks/toy_table.md (the tables) and
benchmarks/toy_table.png (accuracy per row and split, seeds' spread). It resumes: runs already
in the json are not run again (`--tables-only` rebuilds the tables and the plot from it).

- Budget: `--steps` rollout batches of 16 prompts per run (max_steps = steps x the row's
  optimiser steps per batch). SFT: `--steps` batches of 16 demonstrations. SFT+RFT: the RFT
  row's budget from the SFT row's export (SFT at its chosen learning rate, same seed).
- Schedules scaled to the budget: Prefix-RFT's cosine over `--steps` batches (paper: over
  its 500 steps); UFT's hint schedule over 0.6 x `--steps` (UFT: 300 of 500).
- Splits (avg@k and pass@k, k samples at T = 0.6, math-verify): `val` = held-out problems
  100-199 of both ops (learning-rate choice only), `easy` / `hard` = held-out problems 0-99
  (`#` / `&`), `ood_easy` / `ood_hard` = 100 problems with 2-digit operands (every row trains
  on 3-digit ones only; the base was near 0 on 4-digit ones, so they could not separate rows).
- Learning rate per row: the grid value with the best mean val avg@k over seeds; every run
  is evaluated on `val`, the runs at the chosen rate on the reported splits.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning as L
import yaml

ROWS = ["sft", "rft", "sft_rft", "rl_sft_loss", "luffy", "relift", "uft", "prefix_rft"]
SFT_ROWS = {"sft", "uft", "rl_sft_loss", "luffy"}  # a demonstration (UFT: hint) term on every prompt
SPLITS = ["val", "easy", "hard", "ood_easy", "ood_hard"]
REPORTED = ["easy", "hard", "ood_easy", "ood_hard"]
TASK = Path("artifacts/toy/task")
PALETTE = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9"]  # tab10 without its grey (the base's)
PAPER = {"base": 19.0, "sft": 44.1, "rft": 45.5, "sft_rft": 48.2, "rl_sft_loss": 40.1, "luffy": 50.1,
         "relift": 47.8, "uft": 44.2, "prefix_rft": 51.8}  # SPEC 5, Qwen2.5-Math-7B, math average


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


# ---------------------------------------------------------------- splits and evaluation
def split_rows(split: str) -> list[dict]:
    """The problems of a split (see the module docstring)."""
    from prefix_rft_pl.toy.task import all_problems

    def heldout(op: str) -> list[dict]:
        return [json.loads(line) for line in open(TASK / f"heldout_{op}.jsonl")]

    if split == "val":
        return heldout("easy")[100:200] + heldout("hard")[100:200]
    if split in ("easy", "hard"):
        return heldout(split)[:100]
    op = {"ood_easy": "#", "ood_hard": "&"}[split]
    problems = all_problems(op, 2, random.Random(12345 + (op == "&")), 100)
    return [{"problem": p.text, "solution": p.solution(), "answer": p.answer} for p in problems]


def evaluate(policy: str, k: int, splits: list[str]) -> dict[str, list[float]]:
    """{split: [avg@k, pass@k]} of a policy, k samples at T = 0.6 (seeded)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eval_harness.metrics import pass_at_k
    from prefix_rft_pl.engines import HFEngine, SamplingConfig
    from prefix_rft_pl.rewards import MathVerifyReward
    from prefix_rft_pl.toy.task import PROMPT_TEMPLATE
    from prefix_rft_pl.types import GenerationRequest

    tokenizer = AutoTokenizer.from_pretrained(policy)
    engine = HFEngine(AutoModelForCausalLM.from_pretrained(policy), tokenizer)
    reward = MathVerifyReward(num_workers=1)
    out = {}
    for split in splits:
        torch.manual_seed(0)
        rows = split_rows(split)
        requests = [GenerationRequest(tokenizer(PROMPT_TEMPLATE.format(problem=r["problem"]))["input_ids"], 40, [], k)
                    for r in rows]
        rollouts = engine.generate(requests, SamplingConfig(temperature=0.6))
        result = reward([tokenizer.decode(r.token_ids, skip_special_tokens=True) for r in rollouts],
                        [[r["answer"]] for r in rows for _ in range(k)])
        correct = [int(sum(result.rewards[i * k:(i + 1) * k])) for i in range(len(rows))]
        out[split] = [statistics.mean(c / k for c in correct), statistics.mean(pass_at_k(k, c, k) for c in correct)]
    reward.close()
    return out


# ---------------------------------------------------------------- one run
def steps_per_batch(row: str) -> int:
    """Optimiser steps per rollout batch of the row (max_steps counts optimiser steps)."""
    model = yaml.safe_load(Path(f"configs/toy/rows/{row}.yaml").read_text()).get("model", {}) if row else {}
    return model.get("mini_batches", 1) * model.get("ppo_epochs", 1)


def fit(row: str, lr: float, seed: int, steps: int, policy: str, work: Path, name: str) -> Path:
    """Train one row; returns its hf_export directory."""
    row_file = {"sft_rft": "rft", "prefix_rft": None}.get(row, row)
    overlays = ["--config", "configs/toy/prefix_rft.yaml"]
    if row_file:
        overlays += ["--config", f"configs/toy/rows/{row_file}.yaml"]
    extra: dict = {"trainer": {"max_steps": steps * steps_per_batch(row_file), "limit_val_batches": 0,
                               "enable_progress_bar": False,
                               "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                          "init_args": {"save_dir": str(work / name)}}},
                   "seed_everything": seed, "model": {"policy": policy, "seed": seed, "learning_rate": lr}}
    if row == "prefix_rft":  # the paper's cosine over the whole budget
        extra["trainer"]["callbacks"] = [
            {"class_path": "callbacks.PrefixSchedule",
             "init_args": {"kind": "cosine", "low_start": 0.95, "low_end": 0.05, "high": 0.95, "steps": steps}},
            {"class_path": "callbacks.EntropyStats"}]
    if row == "uft":  # UFT: hints for 300 of 500 steps
        extra["model"]["hint_steps"] = max(1, round(0.6 * steps))
    (work / f"{name}.yaml").write_text(yaml.safe_dump(extra))
    callback = json.dumps({"class_path": "benchmarks.toy_table.HardSignal",
                           "init_args": {"out": str(work / f"{name}.signal.json"), "always": row in SFT_ROWS,
                                         "relift": row == "relift"}})
    log = work / f"{name}.log"
    with log.open("w") as f:
        subprocess.run([sys.executable, "-m", "prefix_rft_pl", "fit", *overlays, "--config", str(work / f"{name}.yaml"),
                        "--trainer.callbacks+", callback], check=True, stdout=f, stderr=subprocess.STDOUT)
    return next((work / name).glob("**/hf_export"))


def run_name(row: str, lr: float, seed: int, sft_lr: float | None = None) -> str:
    """Name of a run (SFT+RFT: also the learning rate of the SFT run it starts from)."""
    return f"{row}_lr{lr:g}_s{seed}" + (f"_from_sft_lr{sft_lr:g}" if sft_lr is not None else "")


def evaluate_in_subprocess(policy: Path, k: int, out: Path, splits: list[str]) -> dict:
    with out.with_suffix(".log").open("w") as log:
        subprocess.run([sys.executable, "-m", "benchmarks.toy_table", "--evaluate", str(policy), "--k", str(k),
                        "--eval-out", str(out), "--splits", *splits], check=True, stdout=log, stderr=subprocess.STDOUT)
    return json.loads(out.read_text())


def one_run(row: str, lr: float, seed: int, args, policy: str, work: Path, sft_lr: float | None = None) -> dict:
    start, name = time.time(), run_name(row, lr, seed, sft_lr)
    export = fit(row, lr, seed, args.steps, policy, work, name)
    fit_s = time.time() - start
    scores = evaluate_in_subprocess(export, args.k, work / f"{name}.val.json", ["val"])
    counts = json.loads((work / f"{name}.signal.json").read_text())
    extra = {} if sft_lr is None else {"sft_lr": sft_lr}
    return {"row": row, "lr": lr, "seed": seed, **extra, "name": name, "export": str(export), "scores": scores,
            "signal": counts["signal"] / max(counts["hard"], 1), "fit_s": round(fit_s, 1),
            "eval_s": round(time.time() - start - fit_s, 1)}


# ---------------------------------------------------------------- the grid
class Results:
    """The json of all runs, written after every run (thread-safe)."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.lock = path, threading.Lock()
        old = json.loads(path.read_text()) if path.exists() else {}
        self.runs: list[dict] = old.get("runs", [])
        self.base = old.get("base")
        self.meta = {**old.get("meta", {}), **meta}

    def done(self, row: str, lr: float, seed: int) -> dict | None:
        return next((r for r in self.runs if (r["row"], r["lr"], r["seed"]) == (row, lr, seed)), None)

    def supersede_sft_rft(self, sft_lr: float) -> None:
        """SFT+RFT runs from an SFT run at another learning rate than the chosen one leave the table."""
        with self.lock:
            legacy = self.meta.get("sft_rft_from_sft_lr", sft_lr)  # runs written before `sft_lr` was recorded
            old = [r for r in self.runs if r["row"] == "sft_rft" and r.get("sft_lr", legacy) != sft_lr]
            self.runs = [r for r in self.runs if r not in old]
            self.meta.setdefault("superseded_sft_rft", []).extend(old)
            self.save()

    def add(self, run: dict) -> None:
        with self.lock:
            self.runs.append(run)
            self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps({"meta": self.meta, "base": self.base, "runs": self.runs}, indent=1))


def chosen_lr(runs: list[dict], row: str, lrs: list[float]) -> float | None:
    """The grid value with the best mean val avg@k over the row's seeds (the first on ties), among
    the values with the most seeds done (a grid cut short compares like with like)."""
    vals = {lr: [r["scores"]["val"][0] for r in runs if r["row"] == row and r["lr"] == lr] for lr in lrs}
    most = max((len(v) for v in vals.values()), default=0)
    means = {lr: statistics.mean(v) for lr, v in vals.items() if v and len(v) == most}
    return max(means, key=lambda lr: (means[lr], -lrs.index(lr))) if means else None


def run_grid(args, results: Results, work: Path) -> None:
    base = "artifacts/toy/base"
    if results.base is None:
        results.base = evaluate_in_subprocess(Path(base), args.k, work / "base.eval.json", SPLITS)
        results.save()
    rows = [r for r in args.rows if r != "sft_rft"]
    rows.sort(key=lambda r: r != "sft")  # SFT first: SFT+RFT starts from its export
    jobs = [(row, lr, seed) for row in rows for seed in args.seeds for lr in args.lrs]

    def job(row, lr, seed, policy=base, sft_lr=None):
        if results.done(row, lr, seed) is not None:
            return
        try:
            run = one_run(row, lr, seed, args, policy, work, sft_lr)
        except Exception as error:  # one failed run must not stop the grid: reported, left out
            print(f"FAILED {row} lr={lr:g} seed={seed}: {error!r} (see {work}/{run_name(row, lr, seed, sft_lr)}.log)",
                  flush=True)
            return
        results.add(run)
        print(f"{run['row']} lr={lr:g} seed={seed}: " + json.dumps(run["scores"]) +
              f" ({run['fit_s']:.0f}+{run['eval_s']:.0f} s)", flush=True)

    with ThreadPoolExecutor(args.workers) as pool:
        # SFT first, then SFT+RFT (from SFT's chosen rate), then the rest: SFT+RFT is never left last
        first = [key for key in jobs if key[0] == "sft"] if "sft_rft" in args.rows else []
        futures = {key: pool.submit(job, *key) for key in first}
        if "sft_rft" in args.rows:
            for key in first:
                futures[key].result()
            sft_lr = chosen_lr(results.runs, "sft", args.lrs)
            results.supersede_sft_rft(sft_lr)  # the SFT choice moved (a grid extended): SFT+RFT runs again
            results.meta["sft_rft_from_sft_lr"] = sft_lr
            for seed in args.seeds:
                sft = results.done("sft", sft_lr, seed)
                if sft is None:
                    continue
                for lr in args.lrs:
                    futures[("sft_rft", lr, seed)] = pool.submit(job, "sft_rft", lr, seed, sft["export"], sft_lr)
        for key in jobs:
            if key not in futures:
                futures[key] = pool.submit(job, *key)
        for future in futures.values():
            future.result()
        # the reported splits, for the runs at each row's chosen learning rate only
        chosen = summarise(results, args.lrs)
        todo = [run for c in chosen.values() for run in c["runs"] if "easy" not in run["scores"]]
        for future in [pool.submit(test_scores, run, args.k, work, results) for run in todo]:
            future.result()


def test_scores(run: dict, k: int, work: Path, results: Results) -> None:
    name = run.get("name", run_name(run["row"], run["lr"], run["seed"]))
    try:
        scores = evaluate_in_subprocess(Path(run["export"]), k, work / f"{name}.test.json", REPORTED)
    except Exception as error:
        print(f"FAILED evaluation of {name}: {error!r}", flush=True)
        return
    with results.lock:
        run["scores"].update(scores)
        results.save()
    print(f"{name} reported splits: {json.dumps(scores)}", flush=True)

# ---------------------------------------------------------------- tables and plot
def cell(values: list[float]) -> str:
    """mean +- sample sd over seeds, in percent."""
    values = [100 * v for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def summarise(results: Results, lrs: list[float]) -> dict[str, dict]:
    """Per row: the chosen learning rate and its runs."""
    out = {}
    for row in ROWS:
        lr = chosen_lr(results.runs, row, lrs)
        if lr is not None:
            out[row] = {"lr": lr, "runs": [r for r in results.runs if r["row"] == row and r["lr"] == lr]}
    return out


def write_tables(results: Results, lrs: list[float], k: int, md_path: Path) -> dict[str, dict]:
    chosen = summarise(results, lrs)
    meta = results.meta
    lines = [f"# The paper's table on the toy (fair version, issue 12)", "",
             "Commands (in this order; the grid resumes, runs already in the json are not run again):", "",
             *[f"    {c}" for c in meta.get("commands", [meta.get("command", "")])], "",
             f"Budget: {meta.get('steps')} rollout batches of 16 prompts x 8 rollouts per run; seeds "
             f"{meta.get('seeds')}; learning-rate grid {lrs}; k = {k} samples at T = 0.6; "
             f"wall time {meta.get('wall_min', '?')} min with {meta.get('workers')} workers "
             f"({len(results.runs)} runs).", "",
             "Splits: `val` (held-out problems 100-199 of both ops: learning-rate choice only), `easy` / `hard` "
             "(held-out problems 0-99, `#` / `&`, 3-digit operands like training), `ood_easy` / `ood_hard` "
             "(2-digit operands: no row trains on them). Cells: mean ± sample sd over seeds, percent, at the "
             "row's chosen learning rate. In-dist = mean of easy and hard avg@k.", "",
             f"| row | lr | seeds | val avg@{k} | easy avg@{k} | easy pass@{k} | hard avg@{k} | hard pass@{k} | "
             f"ood easy avg@{k} | ood hard avg@{k} | in-dist avg@{k} | hard prompts with signal |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    if results.base:
        b = results.base
        lines.append(f"| base | - | - | {100 * b['val'][0]:.1f} | {100 * b['easy'][0]:.1f} | {100 * b['easy'][1]:.1f} | "
                     f"{100 * b['hard'][0]:.1f} | {100 * b['hard'][1]:.1f} | {100 * b['ood_easy'][0]:.1f} | "
                     f"{100 * b['ood_hard'][0]:.1f} | {50 * (b['easy'][0] + b['hard'][0]):.1f} | - |")
    for row, c in chosen.items():
        runs = [r for r in c["runs"] if "easy" in r["scores"]]
        if not runs:
            continue
        col = lambda split, i: cell([r["scores"][split][i] for r in runs])  # noqa: E731
        in_dist = cell([(r["scores"]["easy"][0] + r["scores"]["hard"][0]) / 2 for r in runs])
        lines.append(f"| {row} | {c['lr']:g} | {len(runs)} | {col('val', 0)} | {col('easy', 0)} | {col('easy', 1)} | "
                     f"{col('hard', 0)} | {col('hard', 1)} | {col('ood_easy', 0)} | {col('ood_hard', 0)} | "
                     f"{in_dist} | {cell([r['signal'] for r in runs])} |")
    lines += ["", f"Learning-rate grid: val avg@{k} (mean ± sd over seeds); the chosen rate is in bold.", "",
              "| row | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    for row in chosen:
        cells = []
        for lr in lrs:
            vals = [r["scores"]["val"][0] for r in results.runs if r["row"] == row and r["lr"] == lr]
            text = cell(vals) if vals else "-"
            cells.append(f"**{text}**" if lr == chosen[row]["lr"] else text)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    toy = {row: statistics.mean((r["scores"]["easy"][0] + r["scores"]["hard"][0]) / 2 for r in c["runs"]
                                if "easy" in r["scores"])
           for row, c in chosen.items() if any("easy" in r["scores"] for r in c["runs"])}
    if results.base:
        toy["base"] = (results.base["easy"][0] + results.base["hard"][0]) / 2
    lines += ["", "Ranking (best first): toy in-dist avg@k vs the paper's math average (SPEC 5).", "",
              "| rank | toy (in-dist) | paper |", "|---|---|---|"]
    toy_order = sorted(toy, key=toy.get, reverse=True)
    paper_order = sorted((r for r in PAPER if r in toy), key=PAPER.get, reverse=True)
    for i, (a, b) in enumerate(zip(toy_order, paper_order), 1):
        lines.append(f"| {i} | {a} ({100 * toy[a]:.1f}) | {b} ({PAPER[b]:.1f}) |")
    lines.append("")
    lines.append(f"Kendall tau between the two orders: {kendall_tau(toy_order, paper_order):.2f}.")
    md_path.write_text("\n".join(lines) + "\n")
    return chosen


def kendall_tau(order_a: list[str], order_b: list[str]) -> float:
    rank_b = {r: i for i, r in enumerate(order_b)}
    pairs = [(x, y) for i, x in enumerate(order_a) for y in order_a[i + 1:]]
    score = sum(1 if rank_b[x] < rank_b[y] else -1 for x, y in pairs)
    return score / max(len(pairs), 1)


def plot(results: Results, chosen: dict[str, dict], k: int, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (["base"] if results.base else []) + list(chosen)
    fig, axes = plt.subplots(1, len(REPORTED), figsize=(4.2 * len(REPORTED), 4.2), sharey=False)
    for ax, split in zip(axes, REPORTED):
        for i, row in enumerate(rows):
            values = [100 * results.base[split][0]] if row == "base" else \
                [100 * r["scores"][split][0] for r in chosen[row]["runs"] if split in r["scores"]]
            if not values:
                continue
            mean = statistics.mean(values)
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            colour = "lightgrey" if row == "base" else PALETTE[(i - 1) % len(PALETTE)]
            ax.bar(i, mean, color=colour, alpha=0.8, hatch="//" if row == "base" else None)
            ax.errorbar(i, mean, yerr=sd, color="black", capsize=3)
            ax.scatter([i] * len(values), values, color="black", s=8, zorder=3)
        ax.set_xticks(range(len(rows)), rows, rotation=60, ha="right")
        ax.set_title(f"{split} avg@{k} (%)")
    fig.suptitle(f"Toy table: mean ± sd over seeds (dots: seeds), lr chosen on val; "
                 f"{results.meta.get('steps')} rollout batches per run")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60, help="rollout batches per run")
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--rows", nargs="+", default=ROWS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/toy_table")
    parser.add_argument("--work", default="runs/toy_table")
    parser.add_argument("--tables-only", action="store_true")
    parser.add_argument("--evaluate", help=argparse.SUPPRESS)
    parser.add_argument("--eval-out", help=argparse.SUPPRESS)
    parser.add_argument("--splits", nargs="+", default=SPLITS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate:
        Path(args.eval_out).write_text(json.dumps(evaluate(args.evaluate, args.k, args.splits)))
        return
    out, work = Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    meta = {"steps": args.steps, "seeds": args.seeds, "lrs": args.lrs, "k": args.k, "workers": args.workers}
    results = Results(out.with_suffix(".json"), {} if args.tables_only else meta)
    if not args.tables_only:
        if "command" in results.meta:  # a json written by the first version of this script
            results.meta["commands"] = [results.meta.pop("command")]
        results.meta.setdefault("commands", []).append(
            "OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.toy_table " + " ".join(sys.argv[1:]))
        start, before = time.time(), results.meta.get("wall_min", 0)  # a resumed grid adds its time
        run_grid(args, results, work)
        results.meta["wall_min"] = round(before + (time.time() - start) / 60, 1)
        results.save()
    lrs = results.meta["lrs"]
    chosen = write_tables(results, lrs, results.meta["k"], out.with_suffix(".md"))
    plot(results, chosen, results.meta["k"], out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
