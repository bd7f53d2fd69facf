"""Plain data records passed between the data module, the rollout engines and the module.

Everything here is token ids, never text: the hybrid prefix must be the demonstration's
ids exactly (SPEC section 2.2), so nothing between the data module and the engine may
re-tokenise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class PromptItem:
    """One training prompt with its demonstrations and reference answers."""

    uid: str                      # stable id of the prompt (file row, hub index, ...)
    prompt_ids: list[int]         # rendered prompt (template applied), tokenised once
    demo_ids: list[list[int]]     # one or more demonstrations, tokenised once, EOS appended
    answers: list[str]            # accepted reference answers (any one counts)
    extra: dict[str, Any] = field(default_factory=dict)  # the row's other columns (for reward components)


@dataclass
class PromptDemoBatch:
    """What the data module yields: B prompts."""

    items: list[PromptItem]

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class GenerationRequest:
    """Continue `prompt_ids + prefix_ids` for at most `max_new_tokens` tokens, `num_samples` times.

    The engine treats the concatenation as one prompt; the split only tells callers which
    ids were given (a hybrid rollout's demonstration prefix) and which were generated.
    """

    prompt_ids: list[int]
    max_new_tokens: int
    prefix_ids: list[int] = field(default_factory=list)
    num_samples: int = 1


@dataclass
class Rollout:
    """One sample: the ids the engine generated (after prompt + prefix) and their log-probs."""

    token_ids: list[int]
    logprobs: list[float] | None  # engine log-probs of token_ids under its sampling distribution
    finish_reason: str = "length"  # "stop" (EOS) or "length" (budget exhausted)


@dataclass(frozen=True)
class ScoredRollouts:
    """A step's trajectories as callbacks see them (what `training_step` returns as "rollouts"):
    prompt-major lists of N = B x G, plain data."""

    uids: list[str]                   # the prompt's uid, per trajectory
    prompt_ids: list[list[int]]       # the prompt (UFT: with its hint), per trajectory
    prefix_lens: list[int]            # demonstration-prefix tokens (0: an ordinary rollout)
    completions: list[str]            # the graded text: the decoded response, prefix included
    rewards: dict[str, list[float]]   # each reward component's score, by name
    statuses: dict[str, list[str]]    # each component's status ("ok", "timeout", "error"; accuracy: "correct", ...)
    reward: list[float]               # the weighted sum the advantage used
    advantages: list[float]


@runtime_checkable
class ReportsSkips(Protocol):
    """A data module that counts the training rows it left out (logged as data/skipped*)."""

    def skip_counts(self) -> dict[str, int]:
        ...
