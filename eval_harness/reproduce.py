"""The paper's table from one command: `python -m eval_harness reproduce --model qwen2.5-math-7b`.

For each requested row of SPEC 3 (default: the base model, the paper's eight rows and the
three newer hybrids CHORD, SRFT and HPT) and seed: train with the row's config
(`configs/<model>/prefix_rft.yaml` + `configs/rows/<row>.yaml`; SFT+RFT: the RFT row from the
SFT run's export of the same seed), evaluate the final export
with the eval harness under the model's protocol (`MODELS`), and assemble `table.md`,
`table.json` and `table.png` in `--out` (eval_harness/table.py), with the published numbers
beside them where the paper has them.

Work is a list of jobs (a fit or an evaluation, each one command), computed from the arguments
and what is on disk (`plan`), and run in dependency order (`execute`). Qwen2.5-Math's plans
start with a preparation job: the context-extended copy of the base model
(prefix_rft_pl/extend_context.py; 16,384 positions, as LUFFY's), written once in
`<out>/models/` and used by every fit from the base model and by the base's evaluation.
- a job whose marker exists is not run again: a preparation's `prepared.json`, a fit's
  `train/hf_export/export_complete.json` (written after the export), an evaluation's
  `results.json` of the same protocol;
- an interrupted fit starts again with `--ckpt_path last` (Lightning resumes from the run's
  last checkpoint if it has one), an interrupted evaluation resumes from its samples on disk;
- every file a command reads is written before the command runs; a run directory planned with
  other settings (steps, learning rate, protocol) is refused, not silently reused.

`--plan` prints every command with the devices and steps it needs, runs nothing, and writes
only the files the commands read; `--plan --write-scripts DIR` also writes each job's SLURM batch
script, and `--submit slurm` submits them (eval_harness/slurm.py; docs/slurm.md).
Learning-rate grids (`--lrs a b c`, the toy's fair table): every grid value is trained and
evaluated on the model's selection split; each row's rate is the best mean over seeds; only
the chosen runs are evaluated on the reported benchmarks; SFT+RFT starts from the SFT run at
SFT's chosen rate. Those later jobs depend on results, so `--plan` lists them once known.

Directory of one run: `<out>/<row>/<run>/` with `overlay.yaml` (what the harness adds to the
row's config), `train/` (Lightning's `config.yaml`, `run_manifest.json`, `checkpoints/`,
`hf_export/`, metrics), `eval.yaml` and `eval/` (the eval harness's samples and
`results.json`), and logs of each command. `<out>/jobs.jsonl` records every job started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from eval_harness.config import MOVED_OPTIONS, PAPER_BENCHMARKS, EvalConfig
from eval_harness.jobs import Job, describe, execute, selection_score
from prefix_rft_pl.export import EXPORT_MARKER
from prefix_rft_pl.extend_context import LUFFY_CONTEXT, MARKER, ContextExtension

ROWS = ["base", "sft", "rft", "sft_rft", "rl_sft_loss", "luffy", "relift", "uft", "prefix_rft", "chord", "srft", "hpt"]
ROW_FILES = {"sft_rft": "rft", "prefix_rft": None, "base": None}  # else configs/rows/<row>.yaml
TOY_TASK = Path("artifacts/toy/task")


@dataclass(frozen=True)
class ModelSpec:
    """How one model's table is made: its config, evaluation protocol and published numbers."""

    config: str                       # the Prefix-RFT config; rows are overlays on it
    protocol: dict                    # EvalConfig fields (EvalConfig's defaults are SPEC 4's)
    reported: tuple[str, ...]         # benchmarks of the table
    average: tuple[str, ...]          # benchmarks averaged into the table's "average"
    published: str | None = None      # key of eval_harness.report.PUBLISHED
    sft_learning_rate: float | None = None  # SFT row's rate over this config (None: the row file's)
    select_on: tuple[str, ...] = ()   # benchmarks that choose a learning rate from a grid
    eval_devices: int = 1
    context: ContextExtension | None = None  # the context-extended copy every fit and evaluation uses


PAPER_EVAL = {"data_parallel_size": 8}  # one vLLM engine per GPU of a node
# LUFFY's SFT baseline (README of ElliottYan/LUFFY at 01f4ae0: OpenRLHF train_sft, --learning_rate 5e-5;
# it trains 3 epochs, here the RL rows' budget of steps).
LUFFY_SFT_LR = 5e-5
MODELS = {
    # Qwen2.5-Math ships 4,096 positions: prompt + 8,192 new tokens need LUFFY's 16k copy
    "qwen2.5-math-7b": ModelSpec("configs/qwen2.5-math-7b/prefix_rft.yaml", PAPER_EVAL, tuple(PAPER_BENCHMARKS),
                                 tuple(PAPER_BENCHMARKS), "qwen2.5-math-7b", LUFFY_SFT_LR, eval_devices=8,
                                 context=LUFFY_CONTEXT),
    "qwen2.5-math-1.5b": ModelSpec("configs/qwen2.5-math-1.5b/prefix_rft.yaml", PAPER_EVAL, tuple(PAPER_BENCHMARKS),
                                   tuple(PAPER_BENCHMARKS), "qwen2.5-math-1.5b", LUFFY_SFT_LR, eval_devices=8,
                                   context=LUFFY_CONTEXT),
    "llama-3.1-8b": ModelSpec("configs/llama-3.1-8b/prefix_rft.yaml", {**PAPER_EVAL, "max_new_tokens": 2048},
                              tuple(PAPER_BENCHMARKS), tuple(PAPER_BENCHMARKS), None, LUFFY_SFT_LR, eval_devices=8),
    # the toy: 8 samples per problem at T = 0.6 on every split, HF generation, 40 new tokens
    "toy": ModelSpec("configs/toy/prefix_rft.yaml",
                     {"engine": {"kind": "hf", "device": "cpu"}, "max_new_tokens": 40, "num_samples": {},
                      "default_num_samples": 8, "chunk_size": 800, "grading_workers": 1},
                     ("easy", "hard", "ood_easy", "ood_hard"), ("easy", "hard"), select_on=("val",)),
}


# ---------------------------------------------------------------- settings of one run
def read_yaml(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}


def row_config(row: str) -> dict:
    name = ROW_FILES.get(row, row)
    return read_yaml(f"configs/rows/{name}.yaml") if name else {}


def steps_per_batch(row: str) -> int:
    """Optimiser steps per rollout batch (max_steps counts optimiser steps)."""
    update = row_config(row).get("model", {}).get("update", {})
    return update.get("mini_batches", 1) * update.get("ppo_epochs", 1)


def fit_devices(base: dict, fit_overrides: list[str] = ()) -> int:
    """Devices x nodes of a fit: the config's, or those --fit-arg sets (--trainer.devices=N)."""
    trainer = dict(base.get("trainer", {}))
    for arg in fit_overrides:
        key, _, value = arg.partition("=")
        if key in ("--trainer.devices", "--trainer.num_nodes") and value.isdigit():
            trainer[key.removeprefix("--trainer.")] = int(value)
    devices = trainer.get("devices", 1)
    return (devices if isinstance(devices, int) else 1) * trainer.get("num_nodes", 1)


def overlay(base: dict, row: str, run: Path, seed: int, batches: int, lr: float | None, policy: str | None) -> dict:
    """What the harness adds to the row's config: seed, budget, output paths, learning rate,
    policy (SFT+RFT), and the schedules scaled to the budget (Prefix-RFT's cosine over all of
    it, UFT's hints over 0.6 of it, as UFT's 300 of 500 steps, CHORD's mu warm-up over a third
    and its decay over the rest, as Trinity-RFT's 200 + 400 steps)."""
    callbacks = row_config(row).get("trainer", {}).get("callbacks", base["trainer"].get("callbacks", []))
    callbacks = [dict(c, init_args=dict(c.get("init_args", {}))) for c in callbacks]
    for c in callbacks:
        if c["class_path"].endswith("PrefixSchedule") and c["init_args"].get("kind") == "cosine":
            c["init_args"]["steps"] = batches
    model: dict = {"seed": seed}
    if lr is not None:
        model["optim"] = {"lr": lr}
    if policy is not None:
        model["policy"] = policy
    if row == "uft":
        model["hints"] = {**row_config(row)["model"]["hints"], "steps": max(1, round(0.6 * batches))}
    if row == "chord":  # Trinity's 200 + 400 steps over the budget: warm-up a third, the cosine decay the rest
        warmup, hybrid = max(1, round(batches / 3)), row_config(row)["model"]["loss"]["hybrid"]
        model["loss"] = {"hybrid": {**hybrid, "init_args": {**hybrid["init_args"], "mu_warmup_steps": warmup,
                                                            "mu_decay_steps": max(1, batches - warmup)}}}
    loggers = [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(run), "name": "train", "version": ""}},
               {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(run / "train"), "name": "tensorboard", "version": ""}}]
    return {"seed_everything": seed, "model": model,
            "trainer": {"max_steps": batches * steps_per_batch(row), "default_root_dir": str(run),
                        "enable_progress_bar": False, "logger": loggers, "callbacks": callbacks}}


def write_once(path: Path, content: dict) -> None:
    """Write `content` as YAML, or check that the file already holds it (a run directory is
    never reused with other settings)."""
    if path.is_file():
        old = read_yaml(path)
        if old != content:
            diff = sorted(k for k in set(old) | set(content) if old.get(k) != content.get(k))
            raise ValueError(f"{path} was written for other settings (keys {diff} differ): "
                             f"use another --out, or delete {path.parent} to redo that run")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))


# ---------------------------------------------------------------- the plan
@dataclass
class Request:
    model: str
    out: Path
    rows: list[str]
    seeds: list[int]
    steps: int | None = None          # rollout batches per run; None: the config's max_steps
    lrs: list[float] | None = None    # a grid; None: the row's own rate
    eval_overrides: dict = field(default_factory=dict)
    fit_overrides: list[str] = field(default_factory=list)  # extra LightningCLI arguments
    policy: str | None = None         # the starting policy; None: the config's model.policy
    toy_task: Path = TOY_TASK         # the toy's task folder (its eval/ splits are the toy's benchmarks)
    command: str = ""                 # the command line, for the table


def run_dir(req: Request, row: str, seed: int, lr: float | None, sft_lr: float | None = None) -> Path:
    name = (f"lr{lr:g}_" if lr is not None else "") + f"s{seed}"
    return req.out / row / (name + (f"_from_sft_lr{sft_lr:g}" if sft_lr is not None else ""))


def eval_job(req: Request, spec: ModelSpec, base: dict, name: str, ckpt: str, out: Path, benchmarks: list[str],
             after: list[str]) -> Job:
    """`base`: the model's config (the training template is the evaluation's unless the protocol sets one)."""
    overrides = req.eval_overrides
    engine = {**spec.protocol.get("engine", {}), **overrides.get("engine", {})}  # group by group
    settings = {**spec.protocol, **overrides, **({"engine": engine} if engine else {}), "ckpt": ckpt, "out": str(out),
                "benchmarks": benchmarks}
    settings.setdefault("template", base.get("data", {}).get("init_args", {}).get("template", "auto"))
    write_once(out.parent / f"{out.name}.yaml", settings)
    protocol = EvalConfig(**settings).protocol()
    return Job("eval", name, ["python", "-m", "eval_harness", "run", "--config", str(out.parent / f"{out.name}.yaml")],
               spec.eval_devices, out / "results.json", after=after, protocol=json.loads(json.dumps(protocol)))


def benchmark_specs(req: Request, names) -> list[str]:
    """Benchmarks by table name: the toy's are its split files, the paper's registry names."""
    return [str(req.toy_task / "eval" / f"{n}.jsonl") for n in names] if req.model == "toy" else list(names)


def fit_job(req: Request, spec: ModelSpec, base: dict, row: str, seed: int, lr: float | None, policy: str | None,
            sft_lr: float | None = None, after: list[str] | None = None) -> tuple[Job, Path]:
    """`base`: the model's config, which the row's config and the overlay go on."""
    batches = req.steps or base["trainer"]["max_steps"]
    run = run_dir(req, row, seed, lr, sft_lr)
    lr_value = spec.sft_learning_rate if lr is None and row == "sft" else lr  # None: the row file's rate
    settings = overlay(base, row, run, seed, batches, lr_value, policy or req.policy)
    write_once(run / "overlay.yaml", settings)
    row_file = ROW_FILES.get(row, row)
    argv = ["python", "-m", "prefix_rft_pl", "fit", "--config", spec.config,
            *(["--config", f"configs/rows/{row_file}.yaml"] if row_file else []),
            *req.fit_overrides, "--config", str(run / "overlay.yaml"), "--ckpt_path", "last"]
    export = run / "train" / "hf_export"
    job = Job("fit", f"{row}/{run.name}", argv, fit_devices(base, req.fit_overrides), export / EXPORT_MARKER,
              steps=settings["trainer"]["max_steps"], after=after or [])
    return job, export


def prepare_job(req: Request, context: ContextExtension, source: str) -> Job:
    """The context-extended copy of the base model (prefix_rft_pl/extend_context.py), written once
    in <out>/models/ and used by every fit from the base model and by the base's evaluation."""
    name = f"{req.model}-ctx{context.max_position_embeddings}"
    folder = req.out / "models" / name
    argv = ["python", "-m", "prefix_rft_pl.extend_context", source, str(folder), "--max-position-embeddings",
            str(context.max_position_embeddings), "--rope-theta", f"{context.rope_theta:g}"]
    return Job("prepare", name, argv, 0, folder / MARKER)


def choose_lr(scores: dict[float, list[float | None]], grid: list[float]) -> float | None:
    """The grid value with the best mean selection score over seeds (the first on ties); None
    until every (value, seed) is scored."""
    if any(s is None for values in scores.values() for s in values):
        return None
    means = {lr: sum(v) / len(v) for lr, v in scores.items()}
    return max(grid, key=lambda lr: (means[lr], -grid.index(lr)))


def plan(req: Request) -> tuple[list[Job], list[str]]:
    """Every job that can be written down now, and notes on those that cannot yet (they wait
    for a learning-rate choice)."""
    unknown = [r for r in req.rows if r not in ROWS]
    if unknown or req.model not in MODELS:
        raise ValueError(f"unknown rows {unknown} or model {req.model!r}: rows are {ROWS}, models {list(MODELS)}")
    spec = MODELS[req.model]
    base = read_yaml(spec.config)
    base_policy = req.policy or base["model"]["policy"]
    jobs: list[Job] = []
    prepared: list[str] = []  # what every fit of the base policy and the base's evaluation wait for
    if spec.context is not None and req.policy is None:
        prepare = prepare_job(req, spec.context, base_policy)
        jobs.append(prepare)
        prepared = [prepare.id]
        base_policy = str(prepare.marker.parent)
    grid = req.lrs if req.lrs and len(req.lrs) > 1 else None
    lrs = req.lrs or [None]
    reported = benchmark_specs(req, spec.reported)
    select = benchmark_specs(req, spec.select_on)
    if grid and not select:
        raise ValueError(f"--lrs with several values needs a selection split; {req.model} has none")
    notes: list[str] = []
    selections: dict[str, dict[tuple, Job]] = {}  # row -> (lr, seed) -> selection evaluation
    sft_fits: dict[tuple, Job] = {}  # (seed, lr) -> SFT fit: SFT+RFT starts from its export
    if "base" in req.rows:
        jobs.append(eval_job(req, spec, base, "base", base_policy, req.out / "base" / "eval", reported, prepared))
        jobs[-1].meta = {"row": "base", "seed": None, "lr": None}

    def trained(row: str, seed: int, lr, policy=None, sft_lr=None, after=None) -> Job:
        if policy is None and prepared:  # from the prepared copy of the base model
            policy, after = base_policy, [*prepared, *(after or [])]
        fit, export = fit_job(req, spec, base, row, seed, lr, policy, sft_lr, after)
        run = export.parent.parent
        jobs.append(fit)
        if row == "sft":
            sft_fits[(seed, lr)] = fit
        if grid:
            selection = eval_job(req, spec, base, f"{fit.name}/select", str(export), run / "eval_select", select,
                                 [fit.id])
            selection.meta = {"row": row, "seed": seed, "lr": lr, "select": True}
            selections.setdefault(row, {})[(lr, seed)] = selection
            jobs.append(selection)
        elif row in req.rows:
            jobs.append(eval_job(req, spec, base, fit.name, str(export), run / "eval", reported, [fit.id]))
            jobs[-1].meta = {"row": row, "seed": seed, "lr": lr}
        return fit

    def chosen(row: str) -> float | None:
        scores = {lr: [selection_score(selections[row][(lr, seed)]) for seed in req.seeds] for lr in grid}
        return choose_lr(scores, grid)

    trained_rows = [r for r in ROWS if r in req.rows or (r == "sft" and "sft_rft" in req.rows)]
    for row in [r for r in trained_rows if r not in ("base", "sft_rft")]:
        for seed in req.seeds:
            for lr in lrs:
                trained(row, seed, lr)
    if "sft_rft" in req.rows:
        sft_lr = chosen("sft") if grid else lrs[0]  # without a grid, SFT's one run per seed
        if grid and sft_lr is None:
            notes.append("sft_rft: every grid value, from the SFT run at SFT's chosen rate (once SFT's selection "
                         "evaluations are done)")
        for seed in req.seeds if not grid or sft_lr is not None else []:
            sft_fit = sft_fits[(seed, sft_lr)]
            for lr in lrs:
                trained("sft_rft", seed, lr, str(sft_fit.marker.parent), sft_lr if grid else None, [sft_fit.id])
    for row in [r for r in req.rows if r != "base"] if grid else []:
        lr = chosen(row) if row in selections else None
        if lr is None:
            notes.append(f"{row}: the reported evaluations of its runs at the chosen rate (once its selection "
                         f"evaluations are done)")
            continue
        for seed in req.seeds:
            selection = selections[row][(lr, seed)]
            run = selection.marker.parent.parent
            jobs.append(eval_job(req, spec, base, selection.name.removesuffix("/select"),
                                 str(run / "train" / "hf_export"), run / "eval", reported, [selection.id]))
            jobs[-1].meta = {"row": row, "seed": seed, "lr": lr}
    return jobs, notes


def reproduce(req: Request, workers: int = 1) -> dict:
    """Run every job of the plan, planning again after each round (a learning-rate choice
    makes new jobs known), then assemble the table."""
    from eval_harness.table import write_table

    prepare(req)
    req.out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    while True:
        jobs, notes = plan(req)
        ran, failed = execute(jobs, req.out, workers, failed)
        if ran == 0:
            break
    table = write_table(req, jobs, MODELS[req.model], ROWS)
    if failed or notes:
        raise RuntimeError(f"{len(failed)} jobs failed or were skipped: {failed}; not planned: {notes}. The table has "
                           f"what finished; run the same command again to retry (finished jobs are kept).")
    return table


def submit(req: Request, options, wait: bool = False) -> dict | None:
    """Submit every job not done, queued or running to SLURM (eval_harness/slurm.py); with `wait`,
    wait for them, submitting the jobs a learning-rate choice makes known, and never resubmitting
    a job that failed in this call. The table once every job is done, else None."""
    from eval_harness import slurm
    from eval_harness.table import write_table

    prepare(req)
    req.out.mkdir(parents=True, exist_ok=True)
    tried: set[str] = set()
    while True:
        jobs, notes = plan(req)
        actions = slurm.submit(jobs, req.out, options, refuse=tried)
        print("\n".join(map(str, actions)), flush=True)
        tried |= {a.job.id for a in actions if a.what == "submitted"}
        running = {a.slurm_id for a in actions if a.what in ("queued", "submitted")}
        if not wait or not running:
            break
        slurm.wait_for(running)
    if all(j.done() for j in jobs) and not notes:
        return write_table(req, jobs, MODELS[req.model], ROWS)
    failed = [a.job.id for a in actions if a.what in ("failed", "blocked")]
    if wait or failed:
        raise RuntimeError(f"{len(failed)} jobs failed or wait for one that failed: {failed}; not planned yet: "
                           f"{notes}. Logs beside each run; run the same command again to resubmit them.")
    print(f"# {len(running)} jobs queued or running; run the same command again once they end to submit what "
          f"follows or failed, and to assemble the table ({req.out / 'jobs.jsonl'} has their SLURM ids)")
    return None


def prepare(req: Request) -> None:
    """The toy's base model (unless --policy names another) and evaluation splits, built when
    missing (the paper models are hub ids)."""
    if req.model != "toy":
        return
    from prefix_rft_pl.toy.__main__ import ensure_base
    from prefix_rft_pl.toy.task import write_eval_splits

    if req.policy is None:
        ensure_base(Path("artifacts/toy"), "configs/toy/sft_base.yaml")
    if not (req.toy_task / "eval" / "ood_hard.jsonl").is_file():
        write_eval_splits(req.toy_task)


def parse_overrides(pairs: list[str]) -> dict:
    """["key=value", "engine.kv_cache_gib=4", ...] -> {key: YAML value, engine: {kv_cache_gib: 4}}; a
    pair without "=", or an engine option from before the engine group, is an error naming it."""
    out: dict = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.replace("-", "_")
        if not eq or not key:
            raise SystemExit(f"--eval-set {pair!r}: expected KEY=VALUE (an EvalConfig field)")
        if key in MOVED_OPTIONS:
            raise SystemExit(f"--eval-set {pair!r}: {key} moved to {MOVED_OPTIONS[key]}")
        *groups, last = key.split(".")
        target = out
        for group in groups:
            target = target.setdefault(group, {})
        target[last] = yaml.safe_load(value)
    return out


def main(argv: list[str]) -> None:
    import argparse

    from eval_harness import slurm

    parser = argparse.ArgumentParser(prog="python -m eval_harness reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=list(MODELS))
    parser.add_argument("--rows", nargs="+", default=ROWS, help=f"default: all ({' '.join(ROWS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, help="rollout batches per run (default: the config's max_steps)")
    parser.add_argument("--lrs", nargs="+", type=float, help="one rate for every row, or a grid chosen on the "
                        "model's selection split (default: each row's own)")
    parser.add_argument("--out", help="default: runs/reproduce/<model>")
    parser.add_argument("--workers", type=int, default=1, help="jobs at a time (CPU toy; on a cluster: --submit slurm)")
    parser.add_argument("--eval-set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="EvalConfig fields over the model's protocol (e.g. data_dir=... engine.kv_cache_gib=4)")
    parser.add_argument("--fit-arg", action="append", default=[], metavar="ARG",
                        help="an extra argument for every fit, repeatable (e.g. --fit-arg=--trainer.devices=4)")
    parser.add_argument("--policy", help="starting policy (default: the config's model.policy)")
    parser.add_argument("--toy-task", default=str(TOY_TASK), help="toy only: the task folder")
    parser.add_argument("--plan", action="store_true",
                        help="print every command with its devices and steps; run nothing")
    slurm.add_arguments(parser)
    args = parser.parse_args(argv)
    if (args.write_scripts and not args.plan) or (args.wait and not args.submit) or (args.submit and args.plan):
        parser.error("--write-scripts goes with --plan, --wait with --submit; --plan submits nothing")
    for_slurm = bool(args.submit or args.write_scripts)  # scripts run elsewhere: absolute paths
    req = Request(args.model, local_path(args.out or f"runs/reproduce/{args.model}", for_slurm), args.rows,
                  args.seeds, args.steps, args.lrs, parse_overrides(args.eval_set), args.fit_arg,
                  args.policy and str(local_path(args.policy, for_slurm and Path(args.policy).exists())),
                  local_path(args.toy_task, for_slurm), "python -m eval_harness reproduce " + " ".join(argv))
    if args.plan:
        jobs, notes = plan(req)
        print(f"# {len(jobs)} jobs for {req.model} into {req.out}; each starts once the jobs after= names are done; "
              "a (done) job is skipped when the harness runs them")
        print(describe(jobs, notes))
        if args.write_scripts:
            written = slurm.write_scripts(jobs, Path(args.write_scripts).resolve(), slurm.options_from(args))
            print(f"# batch scripts: {written}")
        return
    if args.submit:
        if submit(req, slurm.options_from(args), args.wait) is not None:
            print((req.out / "table.md").read_text())
        return
    reproduce(req, args.workers)
    print((req.out / "table.md").read_text())


def local_path(path: str, absolute: bool) -> Path:
    return Path(path).resolve() if absolute else Path(path)
