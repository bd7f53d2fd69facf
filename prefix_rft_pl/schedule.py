"""Prefix-ratio schedules (SPEC section 2.8): pure functions of the optimiser step.

Each returns low_t; high_t is constant. The paper's default is `cosine_low` from 0.95 to
0.05 over 500 steps; `uniform` is the ablation that draws l ~ U(0.05, 0.95) every step.
"""

from __future__ import annotations

import math


def _progress(step: int, steps: int, delay: int) -> float:
    """Fraction of the schedule done at `step`, after holding the start value `delay` steps."""
    return min(max(step - delay, 0), steps) / max(steps, 1)


def cosine_low(step: int, start: float, end: float, steps: int, delay: int = 0) -> float:
    """low_t = end + 0.5 * (1 + cos(pi * min(t, T) / T)) * (start - end)."""
    return end + 0.5 * (1 + math.cos(math.pi * _progress(step, steps, delay))) * (start - end)


def linear_low(step: int, start: float, end: float, steps: int, delay: int = 0) -> float:
    return start + _progress(step, steps, delay) * (end - start)


def constant_low(step: int, start: float, end: float, steps: int, delay: int = 0) -> float:
    return start


def uniform_low(step: int, start: float, end: float, steps: int, delay: int = 0) -> float:
    """The uniform ablation: low is the schedule's end from the first step."""
    return end


SCHEDULES = {"cosine": cosine_low, "linear": linear_low, "constant": constant_low, "uniform": uniform_low}
