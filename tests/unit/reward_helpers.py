"""Reward components for the tests, run inside real worker processes (this module is light: a
worker imports it before it is ready)."""

from __future__ import annotations

import signal
import time

from prefix_rft_pl.reward_components import RewardComponent


class Boxed(RewardComponent):
    """Format: 1.0 when the completion has a \\boxed{...}."""

    def __init__(self, name: str = "format", weight: float = 1.0):
        super().__init__(name, weight)

    def score(self, completion, answers, extra):
        return float("\\boxed{" in completion)


class FromColumn(RewardComponent):
    """The row's extra column `column`, as the score."""

    def __init__(self, column: str = "bonus", **kwargs):
        super().__init__(**kwargs)
        self.column = column

    def score(self, completion, answers, extra):
        return extra[self.column]


class Hangs(RewardComponent):
    """Sleeps far past any bound when the completion contains `marker` (in C with the alarm
    blocked when `in_c`: only the parent's kill ends it), else scores 1."""

    def __init__(self, marker: str = "", in_c: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.marker, self.in_c = marker, in_c

    def score(self, completion, answers, extra):
        if self.marker in completion:
            if self.in_c:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(60)
        return 1.0


class Raises(RewardComponent):
    """Raises when the completion contains `marker`, returns NaN when it contains `nan_marker`, else 1."""

    def __init__(self, marker: str = "", nan_marker: str = "\0", **kwargs):
        super().__init__(**kwargs)
        self.marker, self.nan_marker = marker, nan_marker

    def score(self, completion, answers, extra):
        if self.marker in completion:
            raise RuntimeError("a bug in a user's reward")
        return float("nan") if self.nan_marker in completion else 1.0
