"""Jobs of the reproduction harness: one command each (a model's preparation, a fit or an evaluation), a marker file
that says it is done, and the jobs it needs first; run in dependency order, a few at a time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from eval_harness.config import protocol_of


@dataclass
class Job:
    kind: str                  # "prepare", "fit" or "eval"
    name: str                  # "<row>/<run>" (+ "/select" for a grid's selection evaluation); a preparation's copy
    argv: list[str]            # argv[0] is "python"
    devices: int
    marker: Path               # exists once the job is done
    steps: int | None = None   # optimiser steps of a fit
    after: list[str] = field(default_factory=list)
    protocol: dict | None = None  # an evaluation's: its results.json must match it
    meta: dict = field(default_factory=dict)  # row, seed, lr (evaluations the table reads)

    @property
    def id(self) -> str:
        """What `after` names: "fit:<name>" or "eval:<name>" (a run's fit and evaluation share a name)."""
        return f"{self.kind}:{self.name}"

    def done(self) -> bool:
        return self.marker.is_file() if self.protocol is None else self.results() is not None

    def results(self) -> dict | None:
        """A finished evaluation's per-benchmark results (its results.json, of the same
        protocol), else None. The file is read once."""
        if not self.marker.is_file():
            return None
        try:
            saved = json.loads(self.marker.read_text())
            config, benchmarks = saved["config"], saved["benchmarks"]
        except (ValueError, KeyError):  # a results.json cut short
            return None
        saved_protocol = protocol_of(config)
        return benchmarks if all(saved_protocol.get(k) == v for k, v in (self.protocol or {}).items()) else None


def selection_score(job: Job) -> float | None:
    """Mean score over the benchmarks of a finished (selection) evaluation, else None."""
    results = job.results()
    return None if results is None else sum(m["score"] for m in results.values()) / len(results)


def fit_root(job: Job) -> Path:
    """A fit's run folder (its Lightning default_root_dir): <run>/train/hf_export/<marker>."""
    return job.marker.parents[2]


def job_log(job: Job) -> Path:
    """Beside the run's files: <run>/fit.log, <run>/eval.log, <run>/eval_select.log; a preparation's
    beside its folder (<out>/models/<copy>.log)."""
    folder = job.marker.parent
    return fit_root(job) / "fit.log" if job.kind == "fit" else folder.parent / f"{folder.name}.log"


def describe(jobs: list[Job], notes: list[str]) -> str:
    """The plan as text: one block per job, the command on its own line."""
    lines = []
    for job in jobs:
        state = " (done)" if job.done() else ""
        steps = f"  steps={job.steps}" if job.steps is not None else ""
        after = ", ".join(job.after) or "-"
        lines += [f"[{job.kind}] {job.name}  devices={job.devices}{steps}  after={after}{state}",
                  "    " + " ".join(job.argv)]
    lines += [f"later: {note}" for note in notes]
    return "\n".join(lines)


def run_job(job: Job, out: Path) -> bool:
    """Run one job's command (this interpreter for `python`), its output appended to a log
    beside its files; record its start in <out>/jobs.jsonl. True if it succeeded."""
    log_path = job_log(job)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (out / "jobs.jsonl").open("a") as history:
        history.write(json.dumps({"job": job.id, "start": time.time()}) + "\n")
    start = time.time()
    with log_path.open("a") as log:
        code = subprocess.run([sys.executable, *job.argv[1:]], stdout=log, stderr=subprocess.STDOUT).returncode
    status = "done" if code == 0 else f"FAILED (exit {code}; see {log_path})"
    print(f"[{job.kind}] {job.name}: {status} in {time.time() - start:.0f} s", flush=True)
    return code == 0


def execute(jobs: list[Job], out: Path, workers: int = 1, failed: list[str] | None = None) -> tuple[int, list[str]]:
    """Run the jobs not yet done, each once the jobs it needs are done, up to `workers` at a
    time. The dependants of a failed job (or of one in `failed`) are skipped; independent jobs
    go on. Returns how many jobs ran and the ids of those that failed or were skipped."""
    failed = list(failed or [])
    done = {j.id for j in jobs if j.done()}
    pending = [j for j in jobs if j.id not in done and j.id not in failed]
    ran = 0
    with ThreadPoolExecutor(workers) as pool:
        running: dict = {}
        while pending or running:
            for job in list(pending):
                if any(a in failed for a in job.after):
                    pending.remove(job)
                    failed.append(job.id)
                    print(f"[{job.kind}] {job.name}: skipped ({', '.join(a for a in job.after if a in failed)} failed)")
                elif all(a in done for a in job.after) and len(running) < workers:
                    pending.remove(job)
                    running[pool.submit(run_job, job, out)] = job
            if not running:
                failed += [j.id for j in pending]  # waiting on a job outside the plan: cannot run
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                ran += 1
                (done.add(job.id) if future.result() else failed.append(job.id))
    return ran, failed
