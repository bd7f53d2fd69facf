"""The reward as a weighted sum of components: r = sum_c weight_c x r_c (SPEC 2.3 is the default,
the math-verify accuracy alone with weight 1).

A component is an object chosen by `class_path` in `model.reward.components`, with a `name`
(logged as `reward/<name>`) and a `weight`. A user component subclasses `RewardComponent` and
implements `score(completion, answers, extra) -> float`; it runs in worker processes of the
grading pool (grading_pool.py), one task per completion, under the same hard time bound
(`reward.timeout_s`) and memory cap as the math-verify grader. A completion whose score hangs,
raises or is not a finite number scores 0 for that component and is counted
(`reward/timeouts_<name>`, `reward/errors_<name>`, and in `reward/timeouts`, `reward/errors`);
the run goes on. The built-in `Accuracy` keeps the grader's own path (in-process screening,
memo of verdicts, rewards.py).
"""

from __future__ import annotations

import importlib
import logging
import math
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prefix_rft_pl.grading_pool import GradingPool, Outcome, worker_command
from prefix_rft_pl.rewards import MathVerifyReward, candidate_answers, grade_readings

RESERVED_NAMES = frozenset({"ordinary", "hybrid", "timeouts", "errors", "no_answer"})  # reward/<these> are taken
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


@dataclass
class ComponentScores:
    """One component's scores of a batch of completions."""

    values: list[float]   # one per completion; 0.0 where the status is not a verdict
    statuses: list[str]   # "ok", "timeout", "error" (Accuracy: correct, wrong, no_answer, timeout, error)


class Scorer(Protocol):
    """How a component's scores are computed: `score` in worker processes, or the grader's path."""

    def __call__(self, completions: Sequence[str], answers: Sequence[Sequence[str]],
                 extras: Sequence[Mapping[str, Any]]) -> ComponentScores: ...

    def close(self) -> None: ...


class RewardComponent:
    """One term of the reward. Subclass it, implement `score`, and name the class in the config:

    ```yaml
    model:
      reward:
        components:
          - class_path: prefix_rft_pl.reward_components.Accuracy       # the paper's, weight 1
          - class_path: my_rewards.BoxedOnce
            init_args: {name: format, weight: 0.2}
    ```

    `score` runs in a worker process (the object is pickled there, its module imported first),
    under `reward.timeout_s` per completion: keep the object light and import at module level.
    Keep `__init__` arguments as attributes of the same names (the checkpoint records them).
    """

    def __init__(self, name: str, weight: float = 1.0):
        """
        Args:
            name: logged as reward/<name>; unique among the components.
            weight: weight of this component in the reward the advantage uses.
        """
        self.name = name
        self.weight = weight

    def score(self, completion: str, answers: Sequence[str], extra: Mapping[str, Any]) -> float:
        """The reward of one completion (the decoded response, prefix included). `answers`: the
        row's accepted answers; `extra`: the row's other columns of the data file."""
        raise NotImplementedError

    def scorer(self, grader: MathVerifyReward, workers: int, timeout_s: float) -> Scorer:
        """How the run computes this component's scores: `score` in `workers` bounded processes."""
        return WorkerScorer(self, workers, timeout_s)


class Accuracy(RewardComponent):
    """1.0 when the last \\boxed{} answer is equivalent to an accepted answer (math-verify,
    SPEC 2.3), else 0.0: the paper's reward. In the run it is the shared grader's verdict
    (rewards.MathVerifyReward: screened in process, remembered, bounded in workers)."""

    def __init__(self, name: str = "accuracy", weight: float = 1.0):
        super().__init__(name, weight)

    def score(self, completion, answers, extra):
        """In this process and unbounded: the run uses `scorer`'s bounded grader instead."""
        readings = candidate_answers(completion, answers)
        return float(bool(readings) and grade_readings(readings))

    def scorer(self, grader, workers, timeout_s):
        return AccuracyScorer(grader)


class AccuracyScorer:
    """The math-verify grader's verdicts as a component's scores."""

    def __init__(self, grader: MathVerifyReward):
        self.grader = grader

    def __call__(self, completions, answers, extras) -> ComponentScores:
        result = self.grader(completions, answers)
        return ComponentScores(result.rewards, result.statuses)

    def close(self) -> None:
        pass  # the grader is its owner's (WeightedReward) to close


def score_task(task: tuple) -> float:
    """A worker's task: (component, completion, answers, extra) -> the finite float score."""
    component, completion, answers, extra = task
    value = float(component.score(completion, answers, extra))
    if not math.isfinite(value):
        raise ValueError(f"score {value} is not a finite number")
    return value


class WorkerScorer:
    """A component's `score` in worker processes started on first use, one task per completion.

    Args:
        component: the component (pickled into every task).
        workers, timeout_s: processes and the hard bound per completion (reward.workers, reward.timeout_s).
        startup_timeout_s: how long a worker may take to import the component's module.
        memory_mb: address space a worker may add once its imports are done.
    """

    def __init__(self, component: RewardComponent, workers: int, timeout_s: float, startup_timeout_s: float = 60.0,
                 memory_mb: int = 2048):
        self.component = component
        self.workers, self.timeout_s = workers, timeout_s
        self.startup_timeout_s, self.memory_mb = startup_timeout_s, memory_mb
        self._pool: GradingPool | None = None
        self._warned: set[str] = set()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}  # processes do not travel; the copy starts its own

    def __call__(self, completions, answers, extras) -> ComponentScores:
        if self._pool is None:
            command = worker_command(f"{__name__}:score_task", self.memory_mb, [type(self.component).__module__])
            self._pool = GradingPool(self.workers, self.timeout_s, self.startup_timeout_s, command)
        outcomes = self._pool.run([(self.component, c, list(a), dict(e))
                                   for c, a, e in zip(completions, answers, extras)])
        self._warn_once(outcomes)
        return ComponentScores([o.value if o.status == "ok" else 0.0 for o in outcomes],
                               [o.status for o in outcomes])

    def _warn_once(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.status != "ok" and outcome.status not in self._warned:
                self._warned.add(outcome.status)
                what = "passed the time bound" if outcome.status == "timeout" else f"raised {outcome.detail}"
                logging.getLogger(__name__).warning(
                    "reward component %r %s on a completion: it scores 0 and is counted in reward/%ss_%s "
                    "(warned once)", self.component.name, what, outcome.status, self.component.name)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def weighted_sum(weights: Sequence[float], values: Sequence[Sequence[float]]) -> list[float]:
    """sum_c weights[c] x values[c][i] for every completion i (values: [C][N])."""
    return [sum(w * v[i] for w, v in zip(weights, values)) for i in range(len(values[0]))]


@dataclass
class ScoredCompletions:
    """A batch's reward: the weighted sum the advantage uses, and each component's scores."""

    total: list[float]                    # [N]
    components: dict[str, ComponentScores]

    def metrics(self) -> dict[str, float]:
        """reward/<name> (mean), reward/{timeouts,errors}_<name>, and the totals over components
        (reward/timeouts, reward/errors; reward/no_answer: completions without a \\boxed{} answer)."""
        out: dict[str, float] = {"reward/timeouts": 0.0, "reward/errors": 0.0, "reward/no_answer": 0.0}
        for name, scores in self.components.items():
            out[f"reward/{name}"] = sum(scores.values) / max(len(scores.values), 1)
            for status in ("timeout", "error"):
                count = float(scores.statuses.count(status))
                out[f"reward/{status}s_{name}"] = count
                out[f"reward/{status}s"] += count
            out["reward/no_answer"] += scores.statuses.count("no_answer")
        return out


class WeightedReward:
    """The run's reward: every component scored by its scorer, summed with the weights. The
    math-verify grader (`grader`) is shared by `Accuracy` and validation."""

    def __init__(self, components: Sequence[RewardComponent], workers: int, timeout_s: float):
        self.components = list(components)
        self.grader = MathVerifyReward(workers, timeout_s)
        self.scorers = [c.scorer(self.grader, workers, timeout_s) for c in self.components]

    def __call__(self, completions: Sequence[str], answers: Sequence[Sequence[str]],
                 extras: Sequence[Mapping[str, Any]] | None = None) -> ScoredCompletions:
        if len(completions) != len(answers):
            raise ValueError(f"{len(completions)} completions but {len(answers)} answer lists")
        extras = [{}] * len(completions) if extras is None else extras
        scores = {c.name: scorer(completions, answers, extras) for c, scorer in zip(self.components, self.scorers)}
        total = weighted_sum([c.weight for c in self.components], [s.values for s in scores.values()])
        return ScoredCompletions(total, scores)

    def close(self) -> None:
        self.grader.close()
        for scorer in self.scorers:
            scorer.close()


# ---------------------------------------------------------------- config

def as_component(spec: Any, key: str) -> Any:
    """A component from its config spelling ({class_path, init_args}, as a checkpoint's hparams hold
    it); an object is returned as it is."""
    if not isinstance(spec, Mapping):
        return spec
    path = spec.get("class_path")
    module_name, _, class_name = str(path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{key}.class_path: cannot import {path!r} ({exc})") from exc
    return cls(**spec.get("init_args", {}))


def component_problems(components: Sequence[Any]) -> list[tuple[str, str]]:
    """(key, message) for every component that cannot run: not a RewardComponent, a name that is
    not a metric name or is taken, a weight that is not a finite number, not picklable or
    defined in __main__ (worker processes import it by module); duplicate names."""
    problems = []
    if not components:
        problems.append(("reward.components", "needs at least one component"))
    for i, c in enumerate(components):
        key = f"reward.components[{i}]"
        if not isinstance(c, RewardComponent):
            problems.append((key, f"must be a prefix_rft_pl.reward_components.RewardComponent, got "
                                  f"{type(c).__name__}"))
            continue
        name, weight = getattr(c, "name", None), getattr(c, "weight", None)
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in RESERVED_NAMES:
            problems.append((f"{key}.name", f"must be a name of letters, digits, _ . - (logged as reward/<name>), "
                                            f"not one of {sorted(RESERVED_NAMES)}; got {name!r}"))
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            problems.append((f"{key}.weight", f"must be a finite number, got {weight!r}"))
        if type(c).__module__ == "__main__":
            problems.append((key, f"{type(c).__name__} is defined in __main__: define it in an importable module "
                                  "(the reward's worker processes import it)"))
        else:
            try:
                pickle.loads(pickle.dumps(c))
            except Exception as exc:  # noqa: BLE001  (any reason it cannot travel to a worker)
                problems.append((key, f"{type(c).__name__} must be picklable (it runs in worker processes): {exc!r}"))
    names = [getattr(c, "name", None) for c in components]
    duplicates = sorted({n for n in names if names.count(n) > 1 and isinstance(n, str)})
    if duplicates:
        problems.append(("reward.components", f"duplicate names {duplicates} (each is logged as reward/<name>)"))
    return problems
