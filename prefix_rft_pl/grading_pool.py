"""Grading worker processes with a hard time bound per task and a memory bound per process.

math-verify bounds its own work with SIGALRM, which only works in a main thread and cannot
interrupt C code (sympy on huge integers), so tasks run in worker processes with two
bounds: the worker's own alarm stops pure-Python work (most of sympy) at
`SOFT_FRACTION` x the bound and the worker goes on; the parent kills a worker still busy at
the bound itself (C code), and a fresh worker takes its place. Either way the task counts
as a timeout. Each worker caps its address space (RLIMIT_AS) once warm, so an answer
that would exhaust memory raises MemoryError there (an error), never in the trainer.

The same pool runs user reward components (prefix_rft_pl/reward_components.py: `run` returns
each task's value, `grade` a verdict); their module is imported before a worker is ready.

A worker that dies or hangs before it is ready is not respawned in a loop: it is dropped,
and when no worker is left the pool raises `GradingWorkerError` with the worker's exit
code and the end of its stderr, within the start-up bound.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_WORKER_CODE = ("import os, sys; sys.path[:0] = [p for p in sys.argv[1].split(os.pathsep) if p not in sys.path]; "
                "from prefix_rft_pl.grading_pool import worker_main; "
                "worker_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[-1]), sys.argv[4:-1])")


SOFT_FRACTION = 0.8   # the worker's own alarm, as a fraction of the hard bound


class _SoftTimeout(BaseException):
    """Raised by the worker's alarm; a BaseException, so no `except Exception` swallows it."""


def _alarm(signum, frame):
    raise _SoftTimeout


class GradingWorkerError(RuntimeError):
    """No grading worker could start: the environment is broken, not the answer."""


def worker_command(grade_ref: str, memory_mb: int, preload: Sequence[str] = ()) -> list[str]:
    """The command of a worker grading with `grade_ref` ("module:function"), importing the
    modules `preload` before it says it is ready (a user's reward module: its import is no
    task's time and not under the memory cap); the pipe's fd is appended. The worker sees this
    process's import path (a module found here is found there)."""
    paths = os.pathsep.join(dict.fromkeys([_PACKAGE_ROOT, *(p for p in sys.path if p)]))
    return [sys.executable, "-c", _WORKER_CODE, paths, grade_ref, str(memory_mb), *preload]


# ---------------------------------------------------------------- inside a worker

def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when its parent dies, even mid-computation
    (a stuck sympy call holds the GIL, so no Python-level watchdog could run)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def limit_memory(extra_mb: int) -> None:
    """Cap this process's address space at what it uses now plus `extra_mb` (Linux)."""
    try:
        import resource

        size_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                       if line.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size_kb * 1024 + extra_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def worker_main(grade_ref: str, memory_mb: int, fd: int, preload: Sequence[str] = ()) -> None:
    """Run `grade_ref` on (index, task, soft bound) messages until the pipe closes; reply
    (index, value, error), error "timeout" when the alarm stopped the task.

    The `preload` modules are imported and the grade module's `warm_up()` runs first (imports
    and lazy parser set-up are no task's time), then the memory cap is set and "ready" sent.
    """
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle,
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # and so is SIGTERM (the run stops after its step); the
    # worker still ends with its parent (PR_SET_PDEATHSIG) and on a closed pipe
    logging.disable(logging.WARNING)              # math-verify warns on every call with timeouts off
    module_name, _, function_name = grade_ref.partition(":")
    for name in preload:
        importlib.import_module(name)
    module = importlib.import_module(module_name)
    grade_fn = getattr(module, function_name)
    if hasattr(module, "warm_up"):
        module.warm_up()
    if memory_mb > 0:
        limit_memory(memory_mb)
    signal.signal(signal.SIGALRM, _alarm)
    conn = Connection(fd)
    conn.send(("ready", None, None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        index, task, soft_timeout_s = msg
        try:
            value, error = _run_with_alarm(grade_fn, task, soft_timeout_s), None
        except _SoftTimeout:  # also when it fires as the timer is being cleared
            value, error = None, "timeout"
        except BaseException as exc:  # noqa: BLE001  (MemoryError, RecursionError, anything: an error)
            value, error = None, repr(exc)[:500]
        conn.send((index, value, error))


def _run_with_alarm(grade_fn, task, seconds: float) -> Any:
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return grade_fn(task)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# ---------------------------------------------------------------- in the parent

class _Worker:
    """One grading process and the task it is working on.

    A fresh interpreter (not multiprocessing): spawn/forkserver re-import the caller's
    __main__ in every worker, fork is unsafe once CUDA or threads are up.
    """

    def __init__(self, command: list[str]):
        self.conn, child = Pipe()
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen([*command, str(child.fileno())], pass_fds=[child.fileno()],
                                        stdin=subprocess.DEVNULL, stderr=self.stderr)
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.task: int | None = None   # index of the task being graded
        self.deadline = float("inf")

    def submit(self, index: int, task: Any, timeout_s: float) -> None:
        self.conn.send((index, task, SOFT_FRACTION * timeout_s))
        self.task, self.deadline = index, time.monotonic() + timeout_s

    def stderr_tail(self, num_chars: int = 2000) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-num_chars:].strip() or "(nothing)"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.conn.close()
        self.stderr.close()


def _stop_workers(workers: list[_Worker]) -> None:
    """Ask idle workers to exit, kill busy or still starting ones."""
    for worker in workers:
        if worker.ready and worker.task is None:
            try:
                worker.conn.send(None)
                worker.process.wait(timeout=1)
            except (OSError, subprocess.TimeoutExpired):
                pass
        worker.kill()
    workers.clear()


@dataclass(frozen=True)
class Outcome:
    """One task's result: `status` "ok" (with the function's `value`), "timeout" (past the
    bound) or "error" (it raised, or the worker died on it; `detail` says what)."""

    status: str
    value: Any = None
    detail: str = ""


class GradingPool:
    """`num_workers` processes running `command`; `run(tasks)` -> one `Outcome` per task,
    `grade(tasks)` -> one status per task: "correct", "wrong" (the value's truth), "timeout"
    (past `timeout_s`, worker killed) or "error" (it raised, or the worker died on it)."""

    def __init__(self, num_workers: int, timeout_s: float, startup_timeout_s: float, command: list[str]):
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.command = command
        self._workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _stop_workers, self._workers)  # also runs at exit

    def close(self) -> None:
        _stop_workers(self._workers)

    def grade(self, tasks: Sequence[Any]) -> list[str]:
        return [("correct" if o.value else "wrong") if o.status == "ok" else o.status for o in self.run(tasks)]

    def run(self, tasks: Sequence[Any]) -> list[Outcome]:
        outcomes: list[Outcome] = [Outcome("error")] * len(tasks)
        pending = deque(range(len(tasks)))
        while len(self._workers) < self.num_workers:  # top up what earlier calls lost
            self._workers.append(_Worker(self.command))
        num_left = len(tasks)
        while num_left:
            for worker in self._workers:
                if worker.ready and worker.task is None and pending:
                    index = pending.popleft()
                    worker.submit(index, tasks[index], self.timeout_s)
            now = time.monotonic()
            deadlines = [w.deadline for w in self._workers if w.task is not None]
            deadlines += [w.started + self.startup_timeout_s for w in self._workers if not w.ready]
            ready = wait([w.conn for w in self._workers], timeout=max(0.0, min(deadlines, default=now + 1.0) - now))
            for worker in [w for w in self._workers if w.conn in ready]:
                num_left -= self._receive(worker, outcomes)
            num_left -= self._expire(outcomes)
        return outcomes

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker(self.command)

    def _start_failed(self, worker: _Worker, why: str) -> None:
        """Drop a worker that never became ready; with none left, raise with its message."""
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait()
        message = f"a grading worker {why} before it was ready; its stderr ends:\n{worker.stderr_tail()}"
        worker.kill()
        self._workers.remove(worker)
        if not self._workers:
            raise GradingWorkerError(message)
        logging.getLogger(__name__).warning("%s (grading goes on with %d workers)", message, len(self._workers))

    def _receive(self, worker: _Worker, outcomes: list[Outcome]) -> int:
        """Read one message from `worker`; return how many tasks it settled."""
        try:
            index, value, error = worker.conn.recv()
        except (EOFError, OSError):
            if not worker.ready:
                self._start_failed(worker, f"exited with code {worker.process.wait()}")
                return 0
            index = worker.task
            self._replace(worker)  # it died on a task: the task is an error
            if index is None:
                return 0
            outcomes[index] = Outcome("error", detail=f"the worker died (exit code {worker.process.returncode})")
            return 1
        if index == "ready":
            worker.ready = True
            return 0
        worker.task, worker.deadline = None, float("inf")
        outcomes[index] = Outcome("ok", value) if error is None else Outcome(
            "timeout" if error == "timeout" else "error", detail=error)
        return 1

    def _expire(self, outcomes: list[Outcome]) -> int:
        """Kill workers past their bound; return how many tasks that settled."""
        now, settled = time.monotonic(), 0
        for worker in list(self._workers):
            if worker.task is not None and now >= worker.deadline:
                outcomes[worker.task] = Outcome("timeout")
                settled += 1
                self._replace(worker)
            elif not worker.ready and now >= worker.started + self.startup_timeout_s:
                self._start_failed(worker, f"did not start within {self.startup_timeout_s:g} s")
        return settled
