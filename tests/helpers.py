"""Shared test parts: the module built from a config dict through the CLI's own parser, toy
prompt items, a gradient recorder, and scripted engines (canned rollouts, for tests of the
module's wiring only: end-to-end tests use the HF and vLLM engines).

Scripted engines share the trainer's weights (`LiveWeights`): nothing to push or verify."""

from __future__ import annotations

import json
from typing import Any

import lightning as L

from prefix_rft_pl.engines.base import LiveWeights
from prefix_rft_pl.toy.task import PROMPT_TEMPLATE
from prefix_rft_pl.types import PromptItem, Rollout


def merge(base: dict, extra: dict) -> dict:
    """`extra` over `base`, group by group (nested dicts merge; other values replace)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_module(policy: str, *configs: dict[str, Any]):
    """PrefixRFTModule from config dicts in the YAML spelling (`{"rollout": {"group_size": 4}}`),
    later ones over earlier ones, parsed and instantiated as the CLI does (class_path variants,
    the groups' checks)."""
    from jsonargparse import ArgumentParser

    from prefix_rft_pl.module import PrefixRFTModule

    config: dict = {"policy": policy}
    for extra in configs:
        config = merge(config, extra)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(PrefixRFTModule, "model")
    return parser.instantiate(parser.parse_object({"model": config})).model


def items_from(tokenizer, path, n: int) -> list[PromptItem]:
    """The first `n` rows of a toy jsonl as prompt items (toy template, EOS after the demonstration)."""
    rows = [json.loads(line) for line in open(path)][:n]
    return [PromptItem(str(i), tokenizer(PROMPT_TEMPLATE.format(problem=r["problem"]))["input_ids"],
                       [tokenizer(r["solution"])["input_ids"] + [tokenizer.eos_token_id]], [r["answer"]])
            for i, r in enumerate(rows)]


class GradRecorder(L.Callback):
    """The gradient of every parameter before every optimiser step."""

    def __init__(self):
        self.grads = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append({n: p.grad.clone() for n, p in pl_module.policy.named_parameters()})


class ScriptedEngine(LiveWeights):
    """Ordinary samples answer wrongly except the first of each prompt; hybrids finish the demo."""

    def __init__(self, tokenizer, items):
        self.tokenizer, self.demos = tokenizer, {tuple(i.prompt_ids): i.demo_ids[0] for i in items}

    def generate(self, requests, sampling):
        out = []
        for r in requests:
            demo = self.demos[tuple(r.prompt_ids)]
            for s in range(r.num_samples):
                ids = (demo[len(r.prefix_ids):] if (r.prefix_ids or s == 0)
                       else self.tokenizer("\\boxed{1}")["input_ids"])
                out.append(Rollout(list(ids), [0.0] * len(ids), "stop"))
        return out


class CannedEngine(LiveWeights):
    """Sample 0 of an ordinary request copies the demonstration (correct), the others answer
    `\\boxed{1}` (wrong); hybrids finish the demonstration. Prompts listed in `failing`
    get only wrong ordinary samples. A pure function of the request: the same prompts give
    the same trajectories whatever the data-parallel layout."""

    def __init__(self, tokenizer, items, failing=()):
        self.wrong = tokenizer("\\boxed{1}")["input_ids"] + [tokenizer.eos_token_id]
        self.demos = {tuple(i.prompt_ids): i.demo_ids[0] for i in items}
        self.failing = {tuple(i.prompt_ids) for i in items if i.uid in set(failing)}

    def generate(self, requests, sampling):
        out = []
        for r in requests:
            key = tuple(r.prompt_ids)
            for s in range(r.num_samples):
                right = r.prefix_ids or (s == 0 and key not in self.failing)
                ids = self.demos[key][len(r.prefix_ids):] if right else self.wrong
                out.append(Rollout(list(ids), [0.0] * len(ids), "stop"))
        return out


class RecordingEngine(LiveWeights):
    """Answers `\\boxed{1}` (wrong) to every request, or the rest of the demonstration when
    `finish` (a hint then only needs its end); records the requests."""

    def __init__(self, tokenizer, items, finish=False):
        self.tokenizer, self.finish, self.requests = tokenizer, finish, []
        self.demos = {tuple(i.prompt_ids): i.demo_ids[0] for i in items}

    def generate(self, requests, sampling):
        self.requests += list(requests)
        out = []
        for r in requests:
            for _ in range(r.num_samples):
                ids = self.tokenizer("\\boxed{1}")["input_ids"]
                if self.finish:
                    prompt = next(p for p in self.demos if tuple(r.prompt_ids[:len(p)]) == p)
                    ids = self.demos[prompt][len(r.prompt_ids) - len(prompt):]
                out.append(Rollout(list(ids), [0.0] * len(ids), "stop"))
        return out
