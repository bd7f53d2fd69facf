"""Peak memory of chunked token log-probs against the naive float32 log_softmax.

    .venv/bin/python benchmarks/logprob_memory.py                       # Qwen2.5-1.5B shapes
    .venv/bin/python benchmarks/logprob_memory.py --chunk-size 256 --dtype bfloat16

Forward + backward of logprobs.sum() at V = 151,936, 2,048 tokens (N = 1), H = 1536. Each
variant runs in a fresh subprocess. On CPU its peak is ru_maxrss after the step minus
ru_maxrss once the inputs are allocated, checked to equal the RSS then (large tensors are
mmap'd, so RSS follows live allocations); on CUDA it is max_memory_allocated minus memory_allocated after the inputs.
Both peaks include the [V, H] weight gradient, which any method must hold; pass
--frozen-head to measure with the lm_head weight frozen (hidden-state gradient only).
The two variants' log-probs, entropies and gradients are compared afterwards.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefix_rft_pl.update.logprobs import (  # noqa: E402
    naive_token_logprobs_and_entropy,
    token_logprobs_and_entropy,
)

VARIANTS = ("naive", "chunked")


def run_variant(args: argparse.Namespace) -> None:
    """Worker: one forward + backward; saves peak bytes, seconds and results to args.out."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    # generated in place in their final dtype: a freed temporary would raise ru_maxrss above
    # the baseline and hide part of the step's peak
    hidden = torch.randn(1, args.tokens, args.hidden, generator=gen, dtype=dtype).to(device)
    weight = torch.randn(args.vocab, args.hidden, generator=gen, dtype=dtype).mul_(0.02).to(device)
    targets = torch.randint(0, args.vocab, (1, args.tokens), generator=gen).to(device)
    hidden.requires_grad_()
    weight.requires_grad_(not args.frozen_head)

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        slack = baseline - current_rss()
        assert slack < 64 * 2**20, f"ru_maxrss is {slack / 2**20:.0f} MiB above the current RSS"

    start = time.perf_counter()
    if args.variant == "naive":
        logits = hidden @ weight.T                                       # [1, T, V]
        logprobs, entropy = naive_token_logprobs_and_entropy(logits, targets, args.temperature)
    else:
        logprobs, entropy = token_logprobs_and_entropy(
            hidden, weight, targets, args.temperature, args.chunk_size
        )
    logprobs.sum().backward()

    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    seconds = time.perf_counter() - start
    rows = targets[0, :64]  # weight-gradient rows that get the large one-hot term
    torch.save(
        {
            "peak": peak,
            "seconds": seconds,
            "device": str(device),
            "logprobs": logprobs.detach().cpu().float(),
            "entropy": entropy.cpu().float(),
            "grad_hidden": hidden.grad.cpu().float(),
            "grad_weight_rows": None if weight.grad is None else weight.grad[rows].cpu().float(),
        },
        args.out,
    )


def current_rss() -> int:
    """Resident set size now, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def spawn(variant: str, args: argparse.Namespace, out: Path) -> dict:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
             if k not in ("variant", "out", "frozen_head")]
    flags += ["--frozen-head"] if args.frozen_head else []
    subprocess.run(
        [sys.executable, __file__, f"--variant={variant}", f"--out={out}", *flags], check=True
    )
    return torch.load(out)


def max_abs(a, b) -> float:
    return float((a - b).abs().max())


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {v: spawn(v, args, Path(tmp) / f"{v}.pt") for v in VARIANTS}
    naive, chunked = results["naive"], results["chunked"]

    print(f"device={naive['device']} dtype={args.dtype} V={args.vocab} tokens={args.tokens} "
          f"H={args.hidden} chunk_size={args.chunk_size} temperature={args.temperature} "
          f"lm_head grad={'no' if args.frozen_head else 'yes'}")
    print(f"{'variant':<10}{'peak MiB':>12}{'seconds':>10}")
    for name in VARIANTS:
        print(f"{name:<10}{results[name]['peak'] / 2**20:>12.0f}{results[name]['seconds']:>10.1f}")
    ratio = chunked["peak"] / naive["peak"]
    print(f"ratio chunked/naive = {ratio:.3f} (goal <= 0.25)")

    diffs = {key: max_abs(naive[key], chunked[key])
             for key in ("logprobs", "entropy", "grad_hidden", "grad_weight_rows")
             if naive[key] is not None}
    print("max |naive - chunked|: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    tol = 1e-3 if args.dtype == "float32" else 5e-2
    agree = all(v <= tol * max(1.0, float(naive[k].abs().max())) for k, v in diffs.items())
    print(f"values agree (tolerance {tol:g} relative to max magnitude): {agree}")
    if not agree:
        sys.exit(1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--tokens", type=int, default=2_048)
    parser.add_argument("--hidden", type=int, default=1_536)
    parser.add_argument("--chunk-size", type=int, default=128)  # the module's default model.update.logprob_chunk_size
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--frozen-head", action="store_true", help="lm_head weight frozen")
    parser.add_argument("--variant", choices=VARIANTS, help="internal: run one variant")
    parser.add_argument("--out", help="internal: where the worker saves its results")
    return parser.parse_args()


if __name__ == "__main__":
    cli_args = parse_args()
    if cli_args.variant:
        run_variant(cli_args)
    else:
        main(cli_args)
