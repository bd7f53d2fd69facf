"""Grade functions for the grading pool's tests, run inside real worker processes."""

from __future__ import annotations

import time


def allocate(num_mb: int) -> bool:
    """Hold `num_mb` MiB at once: past the worker's memory cap this raises MemoryError."""
    block = bytearray(num_mb * 2**20)
    return len(block) > 0


def sleep_in_python(seconds: float) -> bool:
    """Pure-Python busy work: the worker's own alarm can stop it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return True


def sleep_in_c(seconds: float) -> bool:
    """Work the worker's alarm cannot stop (as sympy inside one C call on a huge integer):
    the alarm is blocked, so only the parent's kill ends it."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return True


def dispatch(task: tuple) -> bool:
    name, arg = task
    return {"allocate": allocate, "python": sleep_in_python, "c": sleep_in_c}[name](arg)
