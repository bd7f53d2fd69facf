"""The grading pool: hard and soft time bounds, a memory cap per worker, and a worker that
cannot start is an error naming its message, within the start-up bound, never respawned
in a loop."""

from __future__ import annotations

import sys
import time

import pytest

from prefix_rft_pl.grading_pool import GradingPool, GradingWorkerError, worker_command
from prefix_rft_pl.rewards import MathVerifyReward

DIES_AT_START = [sys.executable, "-c", "import sys; sys.stderr.write('no math_verify in this env\\n'); sys.exit(3)"]
HANGS_AT_START = [sys.executable, "-c", "import time; time.sleep(60)"]


def spawned(pool: GradingPool) -> int:
    return len(pool._workers)


def test_worker_that_dies_at_start_is_an_error_with_its_message():
    pool = GradingPool(num_workers=2, timeout_s=1.0, startup_timeout_s=10.0, command=DIES_AT_START)
    start = time.monotonic()
    with pytest.raises(GradingWorkerError, match=r"exited with code 3(.|\n)*no math_verify in this env"):
        pool.grade(["task"])
    assert time.monotonic() - start < 10.0
    assert spawned(pool) == 0  # nothing respawned behind our back


def test_worker_that_hangs_at_start_is_an_error_within_the_startup_bound():
    pool = GradingPool(num_workers=2, timeout_s=1.0, startup_timeout_s=1.5, command=HANGS_AT_START)
    start = time.monotonic()
    with pytest.raises(GradingWorkerError, match="did not start within 1.5 s"):
        pool.grade(["task"])
    assert time.monotonic() - start < 1.5 + 1.0


def test_reward_with_a_dead_worker_raises_instead_of_respawning(monkeypatch):
    import prefix_rft_pl.rewards as rewards

    monkeypatch.setattr(rewards, "worker_command", lambda *args: DIES_AT_START)
    reward = MathVerifyReward(num_workers=2, timeout_s=1.0, startup_timeout_s=10.0)
    start = time.monotonic()
    with pytest.raises(GradingWorkerError, match="no math_verify in this env"):
        reward(["\\boxed{x+1}"], [["x"]])  # needs a worker
    assert time.monotonic() - start < 10.0
    assert reward._workers == []


@pytest.fixture(scope="module")
def pool():
    p = GradingPool(num_workers=1, timeout_s=1.5, startup_timeout_s=30.0,
                    command=worker_command("tests.unit.grading_helpers:dispatch", 256))
    yield p
    p.close()


@pytest.mark.slow
def test_memory_cap_makes_a_hog_an_error_and_the_worker_lives_on(pool):
    assert pool.grade([("allocate", 16)]) == ["correct"]
    pid = pool._workers[0].process.pid
    assert pool.grade([("allocate", 4096)]) == ["error"]    # over the 256 MiB cap: MemoryError
    assert pool.grade([("allocate", 16)]) == ["correct"]
    assert pool._workers[0].process.pid == pid


@pytest.mark.slow
def test_python_work_stops_at_the_soft_bound_without_a_kill(pool):
    pool.grade([("allocate", 1)])   # worker ready
    pid = pool._workers[0].process.pid
    start = time.monotonic()
    assert pool.grade([("python", 30.0)]) == ["timeout"]
    assert time.monotonic() - start < 1.5
    assert pool._workers[0].process.pid == pid


@pytest.mark.slow
def test_c_work_is_killed_at_the_hard_bound_and_replaced(pool):
    pool.grade([("allocate", 1)])
    pid = pool._workers[0].process.pid
    start = time.monotonic()
    assert pool.grade([("c", 30.0)]) == ["timeout"]
    assert time.monotonic() - start < 1.5 + 0.5
    assert pool._workers[0].process.pid != pid
    assert pool.grade([("allocate", 1)]) == ["correct"]   # the replacement grades
