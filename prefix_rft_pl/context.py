"""Prompt + budget against the model's context, checked before any generation.

An engine given a prompt longer than its context fails deep inside (vLLM: a traceback about
`max_model_len` from its input processor) or, with HF `generate`, silently runs past the
positions the model was trained on. The trainer and the eval harness check every request
first: prompt (+ demonstration prefix) + generation budget <= context, and name the prompts
that do not fit. The trainer's way to skip such rows is the data module's
`max_prompt_tokens` (skipped rows are counted as `data/skipped_prompt_too_long`); the
harness's is `--skip_long_prompts` (see eval_harness/config.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefix_rft_pl.types import GenerationRequest


class PromptTooLongError(ValueError):
    """Prompts whose prompt + budget exceed the model's context; the message names them."""


def model_context(config: Any, max_model_len: int | None = None) -> int | None:
    """Longest sequence the model (and its engine) takes: `max_model_len` when set (the engine
    can be configured below the model), else the config's `max_position_embeddings`."""
    limit = getattr(config, "max_position_embeddings", None)
    if max_model_len is not None:
        return max_model_len if limit is None else min(max_model_len, limit)
    return limit


def over_context(lengths: Sequence[int], budget: int, context: int | None) -> list[int]:
    """Indices i with lengths[i] + budget > context (none when the context is unknown)."""
    if context is None:
        return []
    return [i for i, n in enumerate(lengths) if n + budget > context]


def describe(names: Sequence[str], lengths: Sequence[int], budget: int, context: int, shown: int = 5) -> str:
    """'3 prompts: aime24/7 (4,100 tokens), ...' for an error message."""
    listed = ", ".join(f"{name} ({n:,} tokens)" for name, n in list(zip(names, lengths))[:shown])
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return (f"{len(names)} prompt(s) do not fit: prompt + budget {budget:,} > context {context:,}: "
            f"{listed}{more}")


def check_requests(requests: Sequence[GenerationRequest], names: Sequence[str], context: int | None,
                   what: str = "training") -> None:
    """Raise PromptTooLongError (naming the rows) if any request's prompt + prefix + budget exceeds
    `context`. `names[i]` identifies the row of `requests[i]` (its data uid); `what` the data
    (training, validation)."""
    if context is None:
        return
    totals = [len(r.prompt_ids) + len(r.prefix_ids) + r.max_new_tokens for r in requests]
    bad = [i for i, total in enumerate(totals) if total > context]
    if not bad:
        return
    seen: dict[str, int] = {}
    for i in bad:  # one entry per row: its prompt length (the response budget includes any prefix)
        seen.setdefault(names[i], len(requests[i].prompt_ids))
    budget = max(requests[i].max_new_tokens + len(requests[i].prefix_ids) for i in bad)
    raise PromptTooLongError(
        f"{what} " + describe(list(seen), list(seen.values()), budget, context)
        + f". Skip and count such rows with data max_prompt_tokens <= {context - budget}, "
          "or lower model.max_response_tokens")


def check_prompts(benchmark: str, problem_ids: Sequence[str], prompt_lengths: Sequence[int], budget: int,
                  context: int | None, skip: bool = False) -> set[int]:
    """The eval harness's check of one benchmark: indices of the problems that do not fit, when
    `skip`; otherwise PromptTooLongError naming the benchmark and those problems."""
    bad = over_context(prompt_lengths, budget, context)
    if bad and not skip:
        names = [f"{benchmark} problem {problem_ids[i]}" for i in bad]
        raise PromptTooLongError(
            describe(names, [prompt_lengths[i] for i in bad], budget, context)
            + ". Skip (and count) them with --skip_long_prompts true, or lower --max_new_tokens")
    return set(bad)
