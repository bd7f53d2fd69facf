"""The evaluation loop: for each benchmark, generate the missing chunks, grade them, append
them to disk; then compute the metrics from everything on disk and write the report.

Generation goes through the RolloutEngine protocol (token ids in, token ids out). Every
chunk is generated right after seeding torch/random/numpy with the chunk's own seed; both
engines sample in-process from torch's default generator, so a chunk's samples depend only
on its composition and seed, never on which chunks ran before it (what makes resume exact).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from eval_harness.benchmarks import Problem, benchmark_name, load_benchmark
from eval_harness.checkpoints import resolve_checkpoint
from eval_harness.config import EvalConfig
from eval_harness.store import SampleStore, chunk_plan, chunk_seed, group_runs
from prefix_rft_pl.engines.base import SamplingConfig
from prefix_rft_pl.types import GenerationRequest


def run(cfg: EvalConfig) -> dict | None:
    """Evaluate `cfg.ckpt`; returns the results (None in a data-parallel shard)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    check_protocol(out, cfg)
    model_path, base = resolve_checkpoint(cfg.ckpt)
    if cfg.data_parallel_size > 1 and cfg.shard is None:
        launch_shards(cfg, out)
    else:
        generate_missing(cfg, out, model_path)
    if cfg.shard is not None:
        return None
    from eval_harness.report import write_report

    return write_report(cfg, out, base=base)


def check_protocol(out: Path, cfg: EvalConfig) -> None:
    """Refuse to mix samples of two protocols in one output folder."""
    path = out / "protocol.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != json.loads(json.dumps(cfg.protocol())):
            diff = {k: (saved.get(k), v) for k, v in cfg.protocol().items() if saved.get(k) != v}
            raise ValueError(f"{out} holds samples of another protocol (saved, now): {diff}; use another --out")
    elif cfg.shard is None:
        path.write_text(json.dumps(cfg.protocol(), indent=2))


def launch_shards(cfg: EvalConfig, out: Path) -> None:
    """One process per engine, each on its own devices, each taking every n-th chunk."""
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = devices.split(",") if devices else [str(i) for i in range(max(torch.cuda.device_count(), 1))]
    per = cfg.tensor_parallel_size
    config_path = out / "config.json"
    config_path.write_text(json.dumps(asdict(cfg)))
    procs = []
    for rank in range(cfg.data_parallel_size):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(ids[rank * per:(rank + 1) * per]))
        cmd = [sys.executable, "-m", "eval_harness", "run", "--config", str(config_path), "--shard", str(rank)]
        procs.append(subprocess.Popen(cmd, env=env))
    failed = [rank for rank, p in enumerate(procs) if p.wait() != 0]
    if failed:
        raise RuntimeError(f"data-parallel shards {failed} failed; rerun the same command to resume")


def generate_missing(cfg: EvalConfig, out: Path, model_path: str) -> None:
    from transformers import AutoTokenizer

    from prefix_rft_pl.rewards import MathVerifyReward

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    reward = MathVerifyReward(cfg.grading_workers, cfg.grading_timeout_s)
    engine = None
    try:
        for spec in cfg.benchmarks:
            name = benchmark_name(spec)
            problems = load_benchmark(spec, cfg.data_dir)[: cfg.limit]
            plan = chunk_plan(len(problems), cfg.samples_for(name), cfg.chunk_size)
            store = SampleStore(out, name, cfg.shard)
            todo = [k for k, items in enumerate(plan)
                    if not store.has_all(items) and (cfg.shard is None or k % cfg.data_parallel_size == cfg.shard)]
            if not todo:
                continue
            engine = engine or build_engine(cfg, model_path, tokenizer)
            prompts = [encode(p, cfg.template, tokenizer) for p in problems]
            from tqdm import tqdm

            for k in tqdm(todo, desc=name, unit="chunk", initial=len(plan) - len(todo), total=len(plan)):
                records = run_chunk(engine, tokenizer, reward, cfg, name, k, plan[k], problems, prompts)
                store.append(records)
    finally:
        reward.close()
        if engine is not None and hasattr(engine, "close"):
            engine.close()


def run_chunk(engine, tokenizer, reward, cfg, name, k, items, problems, prompts) -> list[dict]:
    """Generate and grade one chunk; its records in plan order."""
    seed_all(chunk_seed(cfg.seed, name, k))
    runs = group_runs(items)
    requests = [GenerationRequest(prompts[p], cfg.max_new_tokens, num_samples=n) for p, n in runs]
    sampling = SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
    rollouts = engine.generate(requests, sampling)
    texts = tokenizer.batch_decode([r.token_ids for r in rollouts], skip_special_tokens=True)
    graded = reward(texts, [problems[p].answers for p, _ in items])
    from prefix_rft_pl.rewards import extract_boxed

    return [
        {"problem": p, "sample": s, "id": problems[p].id, "chunk": k, "completion": text,
         "extracted": extract_boxed(text), "correct": bool(score), "status": status,
         "num_tokens": len(rollout.token_ids), "finish_reason": rollout.finish_reason}
        for (p, s), text, rollout, score, status in zip(items, texts, rollouts, graded.rewards, graded.statuses)
    ]


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
    if cfg.engine == "hf":
        from transformers import AutoModelForCausalLM

        from prefix_rft_pl.engines.hf import HFEngine

        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=cfg.dtype).to(device)
        return HFEngine(model, tokenizer, max_batch_size=cfg.chunk_size)
    if cfg.engine == "vllm":
        from prefix_rft_pl.engines.vllm import VLLMEngine

        return VLLMEngine(
            model_path, dtype=cfg.dtype, seed=cfg.seed, max_model_len=cfg.max_model_len,
            gpu_memory_utilization=cfg.gpu_memory_utilization, tensor_parallel_size=cfg.tensor_parallel_size,
            kv_cache_gib=cfg.kv_cache_gib,
        )
    raise ValueError(f"unknown engine {cfg.engine!r}: use vllm or hf")
