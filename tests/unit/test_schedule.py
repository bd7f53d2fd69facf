import math

import pytest

from prefix_rft_pl.schedule import constant_low, cosine_low, linear_low, uniform_low


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.95),                                            # cos 0 = 1 -> start
        (250, 0.05 + 0.5 * (1 + math.cos(math.pi / 2)) * 0.9),  # = 0.5, the midpoint
        (500, 0.05),                                          # cos pi = -1 -> end
        (600, 0.05),                                          # stays at the end
    ],
)
def test_cosine_schedule_paper_values(step, expected):
    assert cosine_low(step, 0.95, 0.05, 500) == pytest.approx(expected, abs=1e-12)
    assert cosine_low(250, 0.95, 0.05, 500) == pytest.approx(0.5, abs=1e-12)


def test_cosine_quarter_point():
    # t = 125: 0.05 + 0.5 * (1 + cos(pi/4)) * 0.9 = 0.05 + 0.45 * 1.70711 = 0.818198
    assert cosine_low(125, 0.95, 0.05, 500) == pytest.approx(0.8181980515, abs=1e-9)


def test_delay_holds_the_start():
    assert cosine_low(100, 0.95, 0.05, 500, delay=100) == pytest.approx(0.95)
    assert cosine_low(350, 0.95, 0.05, 500, delay=100) == pytest.approx(0.5)


def test_other_schedules():
    assert linear_low(250, 0.95, 0.05, 500) == pytest.approx(0.5)
    assert linear_low(1000, 0.95, 0.05, 500) == pytest.approx(0.05)
    assert constant_low(250, 0.95, 0.05, 500) == 0.95
    assert uniform_low(0, 0.95, 0.05, 500) == 0.05
