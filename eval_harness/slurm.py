"""The reproduction harness's jobs on SLURM: one batch script per job, submitted with `sbatch`.

Plain sbatch scripts, not submitit: the jobs are already shell commands (a fit, an evaluation),
so submitit's pickled Python callables add nothing; its job states come from `sacct`, which needs
accounting storage that small clusters (and the test cluster, scripts/slurm_cluster.sh) lack;
its own pre-emption handling would compete with Lightning's; and a script on disk is what
`--plan --write-scripts` shows, what a user can read, edit and submit by hand.

A fit: `--nodes=N --ntasks-per-node=<its devices / N>` (`--gpus-per-node` on GPUs) and its
command under `srun`, one task per device, so Lightning's SLURMEnvironment takes the ranks.
Pre-emption: `--signal=USR1@90` sends SIGUSR1 to every task 90 s before the time limit (or
`scancel --signal=USR1`); the run (prefix_rft_pl/run_control.py, in place of Lightning's own
handler, which saves in the middle of a step) finishes its step, saves `last.ckpt`, and rank 0
calls `scontrol requeue`, which `--requeue` allows; the requeued script's `--ckpt_path last`
resumes exactly there. `--open-mode=append`: the log keeps every attempt.
An evaluation: one node, `--ntasks=<its devices>`; its command runs once, in the batch script,
and starts its data-parallel shards as the tasks of one srun step (eval_harness/launcher.py).

`after=` becomes `--dependency=afterok:<ids>` on the jobs still queued or running (a finished
job needs none), with `--kill-on-invalid-dep=yes`: the dependants of a failed job are
cancelled rather than left pending forever. `<out>/jobs.jsonl` gets a line per submission and
per state seen ({"job", "slurm_id", "state", "time", ...}). Submitting again: a job whose marker
says done, or whose last SLURM id is still queued or running, is left alone; every other one
(failed, cancelled, timed out, forgotten by SLURM, never submitted) is submitted. States come
from `squeue --states=all` (finished jobs stay listed for MinJobAge); `sacct` is not needed.
"""

from __future__ import annotations

import getpass
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from eval_harness.jobs import Job, job_log

# SLURM job states (squeue %T) of a job that has not ended, or will run again
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
                    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"})


@dataclass(frozen=True)
class SlurmOptions:
    """What every batch script asks of the cluster (the jobs' own sizes come from the plan)."""

    partition: str | None = None
    account: str | None = None
    time: str | None = None            # --time of every job, e.g. 48:00:00
    nodes: int = 1                     # nodes of a fit; its devices are split evenly over them
    gpus_per_node: int = 0             # 0: CPU ranks (no --gpus-per-node)
    cpus_per_task: int | None = None
    signal: str = "USR1@90"            # a fit's pre-emption warning: SIGUSR1 90 s before the limit
    sbatch: tuple[str, ...] = ()       # extra #SBATCH lines, e.g. ("--qos=high", "--mem=0")
    python: str = sys.executable       # the interpreter of every job
    workdir: str = field(default_factory=lambda: str(Path.cwd()))  # the jobs run here (the repository)

    def __post_init__(self):
        if self.nodes < 1 or self.gpus_per_node < 0:
            raise ValueError(f"--nodes {self.nodes} must be >= 1 and --gpus-per-node {self.gpus_per_node} >= 0")
        bad = [line for line in self.sbatch if not line.startswith("-")]
        if bad:
            raise ValueError(f"--sbatch {bad}: each is one sbatch option, e.g. --sbatch=--qos=high")
        if not Path(self.workdir).is_absolute():
            raise ValueError(f"workdir {self.workdir!r} must be absolute")


def add_arguments(parser) -> None:
    """The SLURM options of `python -m eval_harness reproduce`."""
    group = parser.add_argument_group("SLURM", "--submit slurm, or --plan --write-scripts DIR")
    group.add_argument("--submit", choices=["slurm"], help="submit every job not done, queued or running as a "
                       "SLURM batch job (jobs.jsonl in --out records ids and states); run again to resubmit what "
                       "failed")
    group.add_argument("--wait", action="store_true", help="with --submit: wait for the jobs (submitting the ones "
                       "a learning-rate choice makes known), then assemble the table")
    group.add_argument("--write-scripts", metavar="DIR", help="with --plan: write each job's batch script and "
                       "submit_all.sh (sbatch in dependency order) into DIR")
    group.add_argument("--partition")
    group.add_argument("--account")
    group.add_argument("--time", help="time limit of every job (sbatch --time)")
    group.add_argument("--nodes", type=int, default=1, help="nodes per fit (with --fit-arg=--trainer.num_nodes=N)")
    group.add_argument("--gpus-per-node", type=int, default=0, help="0: CPU jobs")
    group.add_argument("--cpus-per-task", type=int)
    group.add_argument("--signal", default="USR1@90", help="pre-emption warning of a fit (sbatch --signal)")
    group.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                       help="an extra #SBATCH line for every job, repeatable (e.g. --sbatch=--qos=high)")


def options_from(args) -> SlurmOptions:
    return SlurmOptions(args.partition, args.account, args.time, args.nodes, args.gpus_per_node, args.cpus_per_task,
                        args.signal, tuple(args.sbatch))


# ---------------------------------------------------------------- scripts
def job_name(job: Job) -> str:
    return f"{job.kind}-{job.name}".replace("/", "_")


def resources(job: Job, opts: SlurmOptions) -> list[str]:
    """A fit: one task per device over `opts.nodes` nodes; any other job (an evaluation): one node,
    one task per device (one task for a job of no devices)."""
    if job.kind != "fit":
        gpus = min(opts.gpus_per_node, job.devices)
        return ["--nodes=1", f"--ntasks={max(1, job.devices)}", *([f"--gpus-per-node={gpus}"] if gpus else [])]
    if job.devices % opts.nodes:
        raise ValueError(f"[fit] {job.name}: {job.devices} devices do not split evenly over --nodes {opts.nodes}")
    gpus = [f"--gpus-per-node={opts.gpus_per_node}"] if opts.gpus_per_node else []
    return [f"--nodes={opts.nodes}", f"--ntasks-per-node={job.devices // opts.nodes}", *gpus,
            f"--signal={opts.signal}"]


def sbatch_lines(job: Job, opts: SlurmOptions) -> list[str]:
    named = [("partition", opts.partition), ("account", opts.account), ("time", opts.time),
             ("cpus-per-task", opts.cpus_per_task)]
    return [f"--job-name={job_name(job)}", f"--output={absolute_path(job_log(job), opts)}", "--open-mode=append",
            "--requeue", *resources(job, opts), *(f"--{k}={v}" for k, v in named if v), *opts.sbatch]


def absolute_path(path: Path, opts: SlurmOptions) -> Path:
    return path if path.is_absolute() else Path(opts.workdir) / path


def absolute_argv(argv: list[str], workdir: Path) -> list[str]:
    """Relative paths (a token, or the value of --key=value, holding a '/') that exist under
    `workdir` become absolute; everything else is left as it is."""
    def fix(token: str) -> str:
        key, eq, value = token.partition("=") if token.startswith("--") else ("", "", token)
        if "/" in value and not Path(value).is_absolute() and (workdir / value).exists():
            value = str(workdir / value)
        return key + eq + value

    return [fix(token) for token in argv]


def script(job: Job, opts: SlurmOptions) -> str:
    """The batch script of one job: its #SBATCH lines, then its command with absolute paths."""
    workdir = Path(opts.workdir)
    command = shlex.join([opts.python, *absolute_argv(job.argv[1:], workdir)])
    lines = ["#!/bin/bash", f"# {job.id}, written by python -m eval_harness reproduce",
             *(f"#SBATCH {line}" for line in sbatch_lines(job, opts)),
             "set -euo pipefail", f"cd {shlex.quote(str(workdir))}",
             'echo "== $(date -Is) SLURM job $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0}, on $(hostname)"']
    if job.kind == "fit":
        lines.append(f"srun --kill-on-bad-exit=1 {command}")  # its --ckpt_path last resumes a requeued run
    else:
        lines.append(command)
    return "\n".join(lines) + "\n"


def write_scripts(jobs: list[Job], folder: Path, opts: SlurmOptions) -> Path:
    """Every job's batch script in `folder` and submit_all.sh, which submits the jobs not done in
    dependency order (afterok on the ids it got); returns the path of submit_all.sh."""
    folder.mkdir(parents=True, exist_ok=True)
    done = {j.id for j in jobs if j.done()}
    lines = ["#!/bin/bash", "# submits the jobs of the plan that were not done when it was written",
             "set -euo pipefail"]
    variables: dict[str, str] = {}
    for i, job in enumerate(ordered(jobs)):
        path = folder / f"{job_name(job)}.sbatch"
        path.write_text(script(job, opts))
        job_log(job).parent.mkdir(parents=True, exist_ok=True)  # its --output's folder, for a submission by hand
        if job.id in done:
            continue
        variables[job.id] = f"j{i}"
        after = [f"${variables[a]}" for a in job.after if a in variables]
        dependency = f"--dependency=afterok:{':'.join(after)} --kill-on-invalid-dep=yes " if after else ""
        lines.append(f"j{i}=$(sbatch --parsable {dependency}{shlex.quote(str(path))})  # {job.id}")
    submit_all = folder / "submit_all.sh"
    submit_all.write_text("\n".join(lines) + "\n")
    submit_all.chmod(0o755)
    return submit_all


def ordered(jobs: list[Job]) -> list[Job]:
    """The jobs with every job after those it needs (the plan's order when it already is)."""
    placed: list[Job] = []
    seen: set[str] = set()
    ids = {j.id for j in jobs}
    pending = list(jobs)
    while pending:
        ready = [j for j in pending if all(a in seen or a not in ids for a in j.after)]
        if not ready:
            raise ValueError(f"jobs wait for each other in a circle: {[j.id for j in pending]}")
        for job in ready:
            placed.append(job)
            seen.add(job.id)
            pending.remove(job)
    return placed


# ---------------------------------------------------------------- the cluster
def slurm_command(argv: list[str]) -> str:
    """Run a SLURM client command; its stdout, or an error naming the command and its message."""
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise RuntimeError(f"{argv[0]} not found: is this a SLURM login node? (a test cluster: "
                           "scripts/slurm_cluster.sh start)") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def sbatch(path: Path, after: list[str]) -> str:
    """Submit one script; its SLURM job id."""
    dependency = [f"--dependency=afterok:{':'.join(after)}", "--kill-on-invalid-dep=yes"] if after else []
    return slurm_command(["sbatch", "--parsable", *dependency, str(path)]).strip().split(";")[0]


def query_states() -> dict[str, str]:
    """SLURM id -> state (squeue %T) of this user's jobs the controller still lists."""
    out = slurm_command(["squeue", "--noheader", "--states=all", f"--user={getpass.getuser()}", "--format=%i|%T"])
    return dict(line.strip().split("|", 1) for line in out.splitlines() if "|" in line)


def latest_records(out: Path) -> dict[str, dict]:
    """job id -> the last jobs.jsonl line about its SLURM job (local runs' lines have no slurm_id)."""
    path = out / "jobs.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return {r["job"]: r for r in records if "slurm_id" in r}


def append_records(out: Path, records: list[dict]) -> None:
    with (out / "jobs.jsonl").open("a") as history:
        history.writelines(json.dumps(r) + "\n" for r in records)


@dataclass
class Action:
    job: Job
    what: str                    # done, queued, submitted, failed (refused a retry), blocked
    slurm_id: str | None = None
    state: str | None = None     # the SLURM state seen (queued) or before resubmission
    after: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        details = {"done": "", "queued": f" {self.slurm_id} ({self.state})",
                   "submitted": f" {self.slurm_id}" + (f" afterok:{':'.join(self.after)}" if self.after else "")
                   + (f" (was {self.state})" if self.state else ""),
                   "failed": f" ({self.state}; see {job_log(self.job)})", "blocked": " (waits for a failed job)"}
        return f"[{self.job.kind}] {self.job.name}: {self.what}{details[self.what]}"


def submit(jobs: list[Job], out: Path, opts: SlurmOptions, refuse: Container[str] = ()) -> list[Action]:
    """Submit every job neither done nor queued nor running (scripts in <out>/slurm/), in
    dependency order; a job in `refuse` that would be submitted again is reported failed instead.
    Records submissions and the states seen in <out>/jobs.jsonl."""
    history, states = latest_records(out), query_states()
    ids: dict[str, str] = {}        # job id -> SLURM id of a job that will run (queued, or submitted now)
    done = {j.id for j in jobs if j.done()}
    actions, records = [], []
    for job in ordered(jobs):
        last = history.get(job.id)
        state = states.get(last["slurm_id"]) if last else None
        seen = "DONE" if job.id in done else state or ("UNKNOWN" if last else None)
        if last and seen and seen != last.get("state"):
            records.append({"job": job.id, "slurm_id": last["slurm_id"], "state": seen, "time": time.time()})
        if job.id in done:
            actions.append(Action(job, "done"))
        elif state in ACTIVE:
            ids[job.id] = last["slurm_id"]
            actions.append(Action(job, "queued", last["slurm_id"], state))
        elif job.id in refuse:
            actions.append(Action(job, "failed", last and last["slurm_id"], seen))
        elif any(a not in done and a not in ids for a in job.after):
            actions.append(Action(job, "blocked"))
        else:
            path = out / "slurm" / f"{job_name(job)}.sbatch"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(script(job, opts))
            job_log(job).parent.mkdir(parents=True, exist_ok=True)  # SLURM fails a job whose --output it cannot open
            after = [ids[a] for a in job.after if a in ids]
            ids[job.id] = sbatch(path, after)
            actions.append(Action(job, "submitted", ids[job.id], seen, after))
            records.append({"job": job.id, "slurm_id": ids[job.id], "state": "SUBMITTED", "after": after,
                            "script": str(path), "time": time.time()})
    append_records(out, records)
    return actions


def wait_for(slurm_ids: set[str], poll_s: float = 5.0) -> None:
    """Return once none of the SLURM jobs is queued or running any more."""
    while True:
        states = query_states()
        if not any(states.get(i) in ACTIVE for i in slurm_ids):
            return
        time.sleep(poll_s)
