"""The evaluation loop: for each benchmark, generate the missing chunks, grade them, append
them to disk; then compute the metrics from everything on disk and write the report.

Generation goes through the RolloutEngine protocol (token ids in, token ids out). Every
chunk is generated right after seeding torch/random/numpy with the chunk's own seed; both
engines sample in-process from torch's default generator, so a chunk's samples depend only
on its composition and seed, never on which chunks ran before it or in which process: what
makes resume exact, and data-parallel shards (eval_harness/launcher.py) equal one process.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import torch

from eval_harness.benchmarks import Problem, benchmark_name, load_benchmark
from eval_harness.checkpoints import checkpoint_identity, resolve_checkpoint
from eval_harness.config import EvalConfig
from eval_harness.store import SampleStore, chunk_plan, chunk_seed, group_runs, merge_shard_files
from prefix_rft_pl.engines.base import SamplingConfig
from prefix_rft_pl.types import GenerationRequest


def run(cfg: EvalConfig) -> dict:
    """Evaluate `cfg.ckpt`: generate what is missing (in one process or in data-parallel shards),
    then the results from everything on disk."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    protocol = cfg.protocol() | checkpoint_identity(cfg.ckpt)  # an overwritten last.ckpt is another protocol
    created = check_protocol(out, cfg, protocol)
    try:
        model_path, base = resolve_checkpoint(cfg.ckpt)
        work = missing_work(cfg, out)
    except BaseException:
        forget_protocol(out, created)
        raise
    try:
        if work and cfg.data_parallel_size > 1:
            from eval_harness.launcher import launch_shards

            launch_shards(cfg, out, model_path, work)
        elif work:
            generate(cfg, out, model_path, work)
    except BaseException:
        forget_protocol(out, created)  # a failed up-front check (prompt too long) wrote no samples
        raise
    finally:
        for spec in cfg.benchmarks:  # also what an interrupted data-parallel run left behind
            merge_shard_files(out, benchmark_name(spec))
    from eval_harness.report import write_report

    return write_report(cfg, out, base=base)


def check_protocol(out: Path, cfg: EvalConfig, protocol: dict | None = None) -> bool:
    """Refuse to mix samples of two protocols in one output folder; True when this call
    wrote protocol.json."""
    protocol = cfg.protocol() if protocol is None else protocol
    path = out / "protocol.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != json.loads(json.dumps(protocol)):
            diff = {k: (saved.get(k), v) for k, v in protocol.items() if saved.get(k) != v}
            raise ValueError(f"{out} holds samples of another protocol (saved, now): {diff}; use another --out")
        return False
    path.write_text(json.dumps(protocol, indent=2))
    return True


def forget_protocol(out: Path, created: bool) -> None:
    """Remove the protocol.json this run wrote when it failed before writing any sample."""
    if created and not any(out.glob("samples_*.jsonl")):
        (out / "protocol.json").unlink(missing_ok=True)


def missing_work(cfg: EvalConfig, out: Path) -> list[tuple[str, int]]:
    """(benchmark spec, chunk index) of every chunk not fully on disk, benchmark by benchmark."""
    work = []
    for spec in cfg.benchmarks:
        name = benchmark_name(spec)
        num_problems = len(load_benchmark(spec, cfg.data_dir)[: cfg.limit])
        store = SampleStore(out, name)
        plan = chunk_plan(num_problems, cfg.samples_for(name), cfg.chunk_size)
        work += [(spec, k) for k, items in enumerate(plan) if not store.has_all(items)]
    return work


def generate(cfg: EvalConfig, out: Path, model_path: str, work: list[tuple[str, int]],
             shard: int | None = None) -> None:
    """Generate and grade the chunks in `work`, appending them to this process's samples files
    (`shard`: the data-parallel rank, None in a one-process run)."""
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from prefix_rft_pl.rewards import MathVerifyReward

    chunks: dict[str, list[int]] = {}
    for spec, k in work:
        chunks.setdefault(spec, []).append(k)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prepared = prepare_prompts(cfg, model_path, tokenizer, list(chunks))  # every prompt checked first
    reward = MathVerifyReward(cfg.grading_workers, cfg.grading_timeout_s)
    engine = None
    try:
        for spec, todo in chunks.items():
            name = benchmark_name(spec)
            problems, prompts, too_long = prepared[spec]
            plan = chunk_plan(len(problems), cfg.samples_for(name), cfg.chunk_size)
            store = SampleStore(out, name, shard)
            engine = engine or build_engine(cfg, model_path, tokenizer)
            for k in tqdm(todo, desc=name if shard is None else f"{name} shard {shard}", unit="chunk"):
                store.append(run_chunk(engine, tokenizer, reward, cfg, name, k, plan[k], problems, prompts, too_long))
    finally:
        reward.close()
        if engine is not None:
            engine.close()


def prepare_prompts(cfg: EvalConfig, model_path: str, tokenizer, specs: list[str]) -> dict:
    """spec -> (problems, prompt ids, indices of prompts too long to skip); raises
    PromptTooLongError naming benchmark and problems unless cfg.skip_long_prompts."""
    from transformers import AutoConfig

    from prefix_rft_pl.context import check_prompts, model_context

    context = model_context(AutoConfig.from_pretrained(model_path), cfg.engine.max_model_len)
    prepared = {}
    for spec in specs:
        problems = load_benchmark(spec, cfg.data_dir)[: cfg.limit]
        prompts = [encode(p, cfg.template, tokenizer) for p in problems]
        too_long = check_prompts(benchmark_name(spec), [p.id for p in problems], [len(x) for x in prompts],
                                 cfg.max_new_tokens, context, cfg.skip_long_prompts)
        prepared[spec] = (problems, prompts, too_long)
    return prepared


def run_chunk(engine, tokenizer, reward, cfg, name, k, items, problems, prompts, skip=frozenset()) -> list[dict]:
    """Generate and grade one chunk; its records in plan order. Problems in `skip` (prompt too
    long) are not generated: they score 0 with status prompt_too_long."""
    seed_all(chunk_seed(cfg.seed, name, k))
    live = [(p, s) for p, s in items if p not in skip]
    runs = group_runs(live)
    requests = [GenerationRequest(prompts[p], cfg.max_new_tokens, num_samples=n) for p, n in runs]
    sampling = SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
    rollouts = engine.generate(requests, sampling) if requests else []
    texts = tokenizer.batch_decode([r.token_ids for r in rollouts], skip_special_tokens=True)
    graded = reward(texts, [problems[p].answers for p, _ in live]) if live else None
    from prefix_rft_pl.rewards import extract_boxed

    records = {
        (p, s): {"problem": p, "sample": s, "id": problems[p].id, "chunk": k, "completion": text,
                 "extracted": extract_boxed(text), "correct": bool(score), "status": status,
                 "num_tokens": len(rollout.token_ids), "finish_reason": rollout.finish_reason}
        for (p, s), text, rollout, score, status in
        zip(live, texts, rollouts, graded.rewards if graded else [], graded.statuses if graded else [])
    }
    skipped = {"completion": "", "extracted": None, "correct": False, "status": "prompt_too_long",
               "num_tokens": 0, "finish_reason": "prompt_too_long"}
    return [records.get((p, s)) or {"problem": p, "sample": s, "id": problems[p].id, "chunk": k, **skipped}
            for p, s in items]


def seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # all devices too
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def encode(problem: Problem, template: str, tokenizer) -> list[int]:
    from datamodules.templates import encode_prompt

    return encode_prompt(problem.problem, resolve_template(template, tokenizer), tokenizer)


def resolve_template(template: str, tokenizer) -> str:
    """auto: the paper's user turn in the tokenizer's chat template if it has one, else plain."""
    if template == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    return template


def build_engine(cfg: EvalConfig, model_path: str, tokenizer):
    """The engine of the settings group (prefix_rft_pl.engines.build_engine, as in training); the
    hf engine generates one chunk per batch."""
    from prefix_rft_pl.engines.build import build_engine as build

    return build(replace(cfg.engine, max_batch_size=cfg.chunk_size), model_path, tokenizer, seed=cfg.seed)
