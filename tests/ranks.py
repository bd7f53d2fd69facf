"""Run a function on 2 spawned processes (gloo) and check how they ended.

The test process never joins a process group: workers assert inside, and the test checks
their exit codes, with a timeout against hangs.
"""

from __future__ import annotations

import os
import socket
import sys

import torch

WORLD = 2


def launch(fn, *args, timeout: float = 120.0) -> None:
    """Run fn(rank, port, *args) on WORLD spawned processes; fail on error or timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = torch.multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_run_and_close, args=(fn, rank, port, *args)) for rank in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    hung = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert not hung, f"workers {hung} still running after {timeout} s"
    assert [p.exitcode for p in procs] == [0] * WORLD, "a worker failed (traceback above)"


def _run_and_close(fn, rank: int, port: int, *args) -> None:
    """fn(rank, port, *args), then the process group torn down and the process ended at once.

    Under load a worker whose checks had all passed sometimes aborted in the interpreter's
    teardown ("terminate called without an active exception", exit -6: a native thread still
    joinable at exit), also after destroy_process_group; CI saw it under mp.spawn too. Nothing
    is left to check by then, so a passed worker leaves with os._exit(0); a failed one raises as
    before (exit code 1)."""
    import torch.distributed as dist

    fn(rank, port, *args)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def init_gloo(rank: int, port: int) -> None:
    """Join the WORLD-process gloo group on localhost:port."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
