"""Overhead of the vLLM engine wrapper and of the weight sync, in one run.

    python benchmarks/rollout_and_sync.py [--hidden-size 256 --num-layers 4] [--repeats 5]

1. Rollout phase: `VLLMEngine.generate` (requests -> Rollouts) against `LLM.generate` called
   directly on the same engine with the same prompts and the same `SamplingParams` (so the
   difference is the wrapper's own work: building requests, converting outputs). Goal: <= 1.10x.
   The wrapper's own work is also timed by itself (total minus the time inside
   `LLM.generate`), which a loaded machine's noise does not blur.
2. Weight sync: `VLLMEngine.update_weights` fed by `prefix_rft_pl.weight_sync.stream_full_tensors`
   against one plain copy of the HF state dict (`{k: v.clone()}`). Goal: <= 2x.

Runs alternate between the two sides of each comparison and medians are reported, so that
load from other processes on a shared machine hits both sides alike. The workload is a
Prefix-RFT rollout batch: B prompts x G samples, one of the G a hybrid request continuing a
demonstration prefix with the reduced budget.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def build_requests(num_prompts: int, group_size: int, prompt_len: int, max_new_tokens: int, seed: int = 0):
    """B prompts x G samples: G - 1 ordinary samples and one hybrid (prompt + prefix ids) per prompt."""
    from prefix_rft_pl.types import GenerationRequest

    rng = random.Random(seed)
    requests = []
    for _ in range(num_prompts):
        prompt = [rng.randrange(3, 250) for _ in range(prompt_len)]
        prefix = [rng.randrange(3, 250) for _ in range(rng.randrange(1, max_new_tokens))]
        requests.append(GenerationRequest(prompt, max_new_tokens, num_samples=group_size - 1))
        requests.append(GenerationRequest(prompt, max_new_tokens - len(prefix), prefix_ids=prefix))
    return requests


def time_it(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(a, b, repeats: int) -> tuple[float, float]:
    """Median seconds of `a` and of `b`, run alternately after one warm-up each."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(time_it(a))
        times_b.append(time_it(b))
    return statistics.median(times_a), statistics.median(times_b)


def wrapper_own_work(engine, requests, sampling) -> float:
    """Seconds `VLLMEngine.generate` spends outside `LLM.generate` (building inputs, converting
    outputs): the wrapper's overhead, free of the run-to-run noise of the generation itself."""
    real = engine.llm.generate
    inner: list[float] = []

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = real(*args, **kwargs)
        inner.append(time.perf_counter() - start)
        return out

    engine.llm.generate = timed  # shadows the method on this instance only
    try:
        total = time_it(lambda: engine.generate(requests, sampling))
    finally:
        del engine.llm.generate
    return total - sum(inner)


def bench_rollout(engine, requests, sampling, repeats: int) -> tuple[float, float]:
    from vllm import SamplingParams, TokensPrompt

    from prefix_rft_pl.engines.vllm import _sampling_params

    prompts = [TokensPrompt(prompt_token_ids=r.prompt_ids + r.prefix_ids) for r in requests]
    params = [_sampling_params(SamplingParams, r.num_samples, r.max_new_tokens, sampling) for r in requests]
    wrapped = lambda: engine.generate(requests, sampling)                      # noqa: E731
    direct = lambda: engine.llm.generate(prompts, params, use_tqdm=False)     # noqa: E731
    return alternate(wrapped, direct, repeats)


def bench_sync(engine, model, repeats: int) -> tuple[float, float]:
    from prefix_rft_pl.weight_sync import stream_full_tensors

    sync = lambda: engine.update_weights(stream_full_tensors(model, engine.dtype))  # noqa: E731
    copy = lambda: {k: v.clone() for k, v in model.state_dict().items()}           # noqa: E731
    return alternate(sync, copy, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-prompts", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed rollout phases per side")
    parser.add_argument("--sync-repeats", type=int, default=15, help="timed syncs / copies")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from prefix_rft_pl.engines.base import SamplingConfig
    from prefix_rft_pl.engines.vllm import VLLMEngine
    from prefix_rft_pl.toy.model import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        path = save_tiny_model(tmp, hidden_size=args.hidden_size, num_layers=args.num_layers,
                               num_heads=args.hidden_size // 32, num_kv_heads=max(1, args.hidden_size // 64),
                               intermediate_size=3 * args.hidden_size)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        engine = VLLMEngine(str(path), dtype="float32", max_model_len=512, kv_cache_gib=1, enforce_eager=True)
        try:
            requests = build_requests(args.num_prompts, args.group_size, args.prompt_len, args.max_new_tokens)
            sampling = SamplingConfig(temperature=1.0)
            rollout = bench_rollout(engine, requests, sampling, args.repeats)
            own = statistics.median(wrapper_own_work(engine, requests, sampling) for _ in range(args.repeats))
            sync = bench_sync(engine, model, args.sync_repeats)
        finally:
            engine.close()

    num_params = sum(p.numel() for p in model.parameters())
    num_samples = sum(r.num_samples for r in requests)
    print(f"\nmodel: hidden {args.hidden_size}, {args.num_layers} layers, {num_params / 1e6:.1f}M params, float32; "
          f"torch threads {torch.get_num_threads()}; medians of {args.repeats} rollouts, {args.sync_repeats} syncs")
    print(f"rollout batch: {args.num_prompts} prompts x {args.group_size} samples ({num_samples}), "
          f"prompt {args.prompt_len} tokens, budget {args.max_new_tokens}\n")
    print(f"{'phase':<14}{'ours (s)':>10}{'reference (s)':>15}{'ratio':>8}{'goal':>7}  reference")
    rows = [("rollout", *rollout, 1.10, "LLM.generate, same prompts and SamplingParams"),
            ("weight sync", *sync, 2.0, "{k: v.clone()} of the HF state dict")]
    for name, ours, ref, goal, what in rows:
        print(f"{name:<14}{ours:>10.4f}{ref:>15.4f}{ours / ref:>8.2f}{goal:>7.2f}  {what}")
    print(f"\nwrapper's own work per rollout phase (outside LLM.generate): {own * 1e3:.2f} ms "
          f"= {own / rollout[1]:.2%} of the direct call")


if __name__ == "__main__":
    main()
