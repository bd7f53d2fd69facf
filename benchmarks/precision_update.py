"""What the paper's learning rate does to the weights under each precision setup, and the
bf16 lm_head gradient's error against float64 by number of log-prob chunks.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision_update.py

1. The toy base (or a tiny random Qwen2 when it is not built), AdamW at lr 1e-6 on a real
   log-prob loss, 1 and 10 steps: the fraction of parameter entries that changed, with the
   weights stored in bf16 (`precision: bf16-true` / `model.precision.master: bfloat16`, now
   refused unless `model.precision.allow_half_precision_weights`) and with float32 masters and bf16 compute
   (autocast here; FSDP2's MixedPrecisionPolicy in the paper configs,
   tests/integration/test_precision.py runs that on 2 ranks).
2. The chunked log-prob backward with bf16 hidden states and lm_head (4,096 tokens, V = 1,024):
   relative error (Frobenius) of the weight gradient against float64, for 1 to 256 chunks.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from prefix_rft_pl.update.logprobs import (
    logprobs_from_model,
    naive_token_logprobs_and_entropy,
    token_logprobs_and_entropy,
)


def fraction_changed(model_dir: str, store: torch.dtype, steps: int) -> float:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=store)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
    ids = torch.randint(0, 200, (4, 32), generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 compute either way
            logprobs, _ = logprobs_from_model(model, ids, torch.ones_like(ids), None, torch.roll(ids, -1, 1),
                                              chunk_size=32, with_entropy=False)
        (-logprobs.mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = sum(int((p != b).sum()) for p, b in zip(model.parameters(), before))
    return changed / sum(p.numel() for p in model.parameters())


def bf16_weight_grad_error(num_chunks: int, tokens: int = 4096, vocab: int = 1024, width: int = 64) -> float:
    """Relative error (Frobenius) of the bf16 lm_head weight gradient against float64."""
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(tokens, width, generator=gen)
    weight = torch.randn(vocab, width, generator=gen) * 0.1
    targets = torch.randint(0, vocab, (tokens,), generator=gen)
    ref_weight = weight.double().requires_grad_()
    ref_lp, _ = naive_token_logprobs_and_entropy(hidden.double() @ ref_weight.T, targets)
    ref_lp.sum().backward()

    w16 = weight.bfloat16().requires_grad_()
    lp, _ = token_logprobs_and_entropy(hidden.bfloat16(), w16, targets, chunk_size=tokens // num_chunks,
                                       with_entropy=False)
    lp.sum().backward()
    assert w16.grad.dtype == torch.bfloat16  # the gradient comes back in the weight's dtype
    return float((w16.grad.double() - ref_weight.grad).norm() / ref_weight.grad.norm())


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    base = Path("artifacts/toy/base")
    with tempfile.TemporaryDirectory() as tmp:
        if not (base / "config.json").exists():
            from prefix_rft_pl.toy.model import save_tiny_model

            base = save_tiny_model(Path(tmp) / "tiny")
        print(f"AdamW lr 1e-6 on {base}: fraction of parameter entries changed")
        print(f"{'setup':<44}{'1 step':>8}{'10 steps':>10}")
        for label, store in [("bf16 weights (refused by default)", torch.bfloat16),
                             ("float32 masters, bf16 compute (paper configs)", torch.float32)]:
            one, ten = fraction_changed(str(base), store, 1), fraction_changed(str(base), store, 10)
            print(f"{label:<44}{one:>8.3f}{ten:>10.3f}")
    print("\nbf16 lm_head weight gradient, relative error vs float64 (4,096 tokens, V = 1,024, H = 64)")
    for chunks in (1, 8, 64, 256):
        print(f"{chunks:>4} chunks: {bf16_weight_grad_error(chunks):.4f}")


if __name__ == "__main__":
    main()
