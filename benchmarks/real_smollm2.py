"""SmolLM2-135M-Instruct (a real pretrained LM, prefix_rft_pl/realparts.py) on this machine:

    python benchmarks/real_smollm2.py [--prompts 8 --samples 4 --max-new-tokens 128] [--eager]

For each dtype (float32, bfloat16):
1. Rollout tokens/s: `VLLMEngine.generate` against `LLM.generate` called directly on the same
   engine with the same token prompts and the same sampling settings, alternating which goes
   first, the prefix cache reset before each, median of `--repeats` runs each (a shared
   machine's load hits both sides alike).
2. Engine/trainer log-prob mismatch on the generated tokens: the engine's log-probs against
   the trainer's (`prefix_rft_pl.update.forward.response_logprobs`, the training path) for the HF
   model in the same dtype, mean and max of |difference|.

Prompts: LUFFY's evaluation problems (../shared/real/luffy_valid.parquet, shortest first) in
the model's chat template with the paper's instruction; a built-in list without ../shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

PARQUET = Path(__file__).resolve().parents[2] / "shared" / "real" / "luffy_valid.parquet"
FALLBACK = ["What is 12 + 30?", "Solve for $x$: $3x + 5 = 20$.", "What is $\\frac{1}{2} + \\frac{1}{3}$?",
            "How many positive divisors does 36 have?", "Compute $7 \\times 8 - 6$.",
            "What is the remainder when 100 is divided by 7?", "Simplify $\\sqrt{50}$.", "What is $2^{10}$?"]


def problems(n: int) -> list[str]:
    if not PARQUET.is_file():
        return (FALLBACK * n)[:n]
    from eval_harness.benchmarks import expand_benchmarks, load_benchmark

    texts = [p.problem for spec in expand_benchmarks([str(PARQUET)]) for p in load_benchmark(spec)]
    return sorted(texts, key=len)[:n]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def direct_generate(llm, requests, max_new_tokens: int):
    """`LLM.generate` on the same token prompts, n samples each, temperature 1, sampled-token log-probs."""
    from vllm import SamplingParams, TokensPrompt

    prompts = [TokensPrompt(prompt_token_ids=r.prompt_ids) for r in requests]
    params = SamplingParams(n=requests[0].num_samples, max_tokens=max_new_tokens, temperature=1.0, logprobs=0)
    outputs = llm.generate(prompts, params, use_tqdm=False)
    return sum(len(c.token_ids) for o in outputs for c in o.outputs)


def mismatch(model_dir, dtype, requests, rollouts) -> tuple[float, float]:
    import torch
    from transformers import AutoModelForCausalLM

    from prefix_rft_pl.engines.checks import logprob_mismatch
    from prefix_rft_pl.prefix import Trajectory, pad_trajectories
    from prefix_rft_pl.update.forward import response_logprobs

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    flat = [r for r in requests for _ in range(r.num_samples)]
    trajectories = [Trajectory(0, r.prompt_ids, [], o.token_ids, o.logprobs, o.finish_reason)
                    for r, o in zip(flat, rollouts) if o.token_ids]
    tb = pad_trajectories(trajectories, 0)
    with torch.no_grad():
        logprobs = torch.cat([response_logprobs(model, tb.select(slice(i, i + 4)), 1.0, 128, False)[0].float()
                              for i in range(0, len(trajectories), 4)])
    result = logprob_mismatch(logprobs, tb.engine_logprobs, tb.generated_mask)
    return (result["mean"], result["max"]) if isinstance(result, dict) else tuple(result)[:2]


def run_dtype(model_dir, dtype: str, args) -> dict:
    from transformers import AutoTokenizer

    from datamodules.templates import encode_prompt
    from prefix_rft_pl.engines.base import SamplingConfig
    from prefix_rft_pl.engines.vllm import VLLMEngine
    from prefix_rft_pl.types import GenerationRequest

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    requests = [GenerationRequest(encode_prompt(p, "chat", tokenizer), args.max_new_tokens, num_samples=args.samples)
                for p in problems(args.prompts)]
    (engine, start_s) = timed(lambda: VLLMEngine(str(model_dir), dtype=dtype, max_model_len=2048,
                                                 kv_cache_gib=1, enforce_eager=args.eager))
    sampling = SamplingConfig(temperature=1.0)
    engine.generate(requests[:1], sampling)  # warm-up
    wrapped, direct = [], []
    rollouts = None
    for repeat in range(args.repeats):
        for side in ("wrapped", "direct") if repeat % 2 == 0 else ("direct", "wrapped"):  # alternate
            engine.llm.reset_prefix_cache()  # no side reuses the other's prefill
            if side == "wrapped":
                rollouts, seconds = timed(lambda: engine.generate(requests, sampling))
                wrapped.append(sum(len(r.token_ids) for r in rollouts) / seconds)
            else:
                tokens, seconds = timed(lambda: direct_generate(engine.llm, requests, args.max_new_tokens))
                direct.append(tokens / seconds)
    engine.close()
    mean_abs, max_abs = mismatch(model_dir, dtype, requests, rollouts)
    return {"dtype": dtype, "engine_start_s": start_s, "engine_tok_s": statistics.median(wrapped),
            "direct_tok_s": statistics.median(direct), "mean_abs": mean_abs, "max_abs": max_abs,
            "tokens": sum(len(r.token_ids) for r in rollouts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt (G)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eager", action="store_true", help="enforce_eager (faster start, slower decode)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()

    from prefix_rft_pl.realparts import smollm2_dir

    model_dir = smollm2_dir()
    rows = [run_dtype(model_dir, dtype, args) for dtype in args.dtypes.split(",")]
    print(f"\nSmolLM2-135M-Instruct, {args.prompts} prompts x {args.samples} samples, up to {args.max_new_tokens} "
          f"new tokens, temperature 1, enforce_eager={args.eager}, median of {args.repeats}")
    print("| dtype | engine start s | VLLMEngine tok/s | LLM.generate tok/s | ratio | logprob diff mean | max |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['engine_start_s']:.0f} | {r['engine_tok_s']:.0f} | {r['direct_tok_s']:.0f} | "
              f"{r['engine_tok_s'] / r['direct_tok_s']:.2f} | {r['mean_abs']:.2e} | {r['max_abs']:.2e} |")


if __name__ == "__main__":
    main()
