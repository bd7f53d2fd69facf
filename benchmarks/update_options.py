"""Where the update's time goes on trl_compare's work, and settings that could shorten it.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.update_options [--repeats 2]

Three measurements on the toy base (built if missing), Prefix-RFT as in
`benchmarks/trl_compare.py` (16 prompts x 8 rollouts, 40 tokens, HF generation):

1. The operators of one forward + backward of the update's log-probs (`torch.profiler`, 64
   rows x 56 tokens, 6 left-padding columns), and the achieved float32 GFLOP/s of the
   matrix products (2 x multiply-adds of the dense layers, the lm_head's forward counted
   twice: its logits are recomputed in backward), beside a large square product's.
2. The padding in the update's micro-batches over 6 steps of the real run: the share of
   cells (rows x columns after `forward.padding_columns`) that are real tokens.
3. The median `time/update_s` of whole runs (17 steps after 3 warm-up, as trl_compare) with
   the config's settings and with one log-prob chunk (65,536 tokens, i.e. no chunking at
   V = 288) or other micro-batch sizes. None of these changes the gradient.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.step_time import ensure_toy_base, timed_toy_fit
from benchmarks.trl_compare import PHASES, WARMUP, project_overlay

OPTIONS = {  # model.update keys
    "config (chunks of 128 tokens, micro-batch 64)": {}, "one log-prob chunk": {"logprob_chunk_size": 65536},
    "micro-batch 16": {"micro_batch_size": 16}, "micro-batch 32": {"micro_batch_size": 32},
    "micro-batch 128": {"micro_batch_size": 128}}


def profile_update(rows: int = 64, tokens: int = 56, repeats: int = 10) -> None:
    from torch.profiler import profile
    from transformers import AutoModelForCausalLM

    from prefix_rft_pl.update.logprobs import logprobs_from_model

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained("artifacts/toy/base", dtype=torch.float32)
    ids = torch.randint(0, model.config.vocab_size - 32, (rows, tokens))
    mask = torch.ones(rows, tokens, dtype=torch.long)
    mask[:, :6] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)

    def step() -> None:
        logprobs, _ = logprobs_from_model(model, ids, mask, positions, torch.roll(ids, -1, 1), 1.0, 128, True)
        logprobs.sum().backward()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    seconds = (time.perf_counter() - start) / repeats
    dense = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
    head = model.get_output_embeddings().weight.numel()
    flops = 2 * rows * tokens * (3 * dense + head)  # forward, 2 x backward; the head's logits once more
    with profile() as prof:
        for _ in range(3):
            step()
    table = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in table)
    mm = sum(e.self_cpu_time_total for e in table if e.key in ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm"))
    print(f"1. forward + backward, {rows} rows x {tokens} tokens: {seconds * 1000:.1f} ms "
          f"({seconds * 1000 / rows:.2f} ms/row); matrix products {100 * mm / total:.0f}% of the operators' time, "
          f"{flops / (seconds * mm / total) / 1e9:.0f} GFLOP/s float32")
    print(table.table(sort_by="self_cpu_time_total", row_limit=8))
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    print(f"   for scale: a 2048 x 2048 float32 product runs at "
          f"{5 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9:.0f} GFLOP/s on this process's threads")


def padding_in_update(steps: int = 6) -> None:
    """Runs the toy fit in this process with a spy on the update's forward."""
    import prefix_rft_pl.update.forward as forward
    from prefix_rft_pl.cli import main

    original, cells = forward.response_logprobs, []

    def spy(model, tb, *args, **kwargs):
        if torch.is_grad_enabled():
            left, keep = forward.padding_columns(tb.attention_mask, tb.prompt_width)
            cells.append((int(tb.attention_mask.sum()), len(tb.response_ids) * (tb.prompt_width - left + keep)))
        return original(model, tb, *args, **kwargs)

    forward.response_logprobs = spy
    with tempfile.TemporaryDirectory() as tmp:
        argv, sys.argv = sys.argv, ["prefix_rft_pl", "fit", "--config", "configs/toy/prefix_rft.yaml",
                                    "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0",
                                    "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                                    "--trainer.default_root_dir", tmp, "--model.rollout.max_response_tokens", "40"]
        try:
            main()
        finally:
            sys.argv, forward.response_logprobs = argv, original
    shares = [real / total for real, total in cells]
    print(f"2. real tokens per micro-batch cell in the update, {len(cells)} micro-batches over {steps} steps: "
          f"min {min(shares):.2f}, median {statistics.median(shares):.2f}, overall "
          f"{sum(r for r, _ in cells) / sum(t for _, t in cells):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the whole-run settings, interleaved")
    args = parser.parse_args()
    ensure_toy_base()
    profile_update()
    padding_in_update()
    results: dict[str, list[float]] = {name: [] for name in OPTIONS}
    for _ in range(args.repeats):
        for name, extra in OPTIONS.items():
            overlay = project_overlay(False, "hf")
            overlay["model"]["update"] |= extra
            with tempfile.TemporaryDirectory() as tmp:
                results[name].append(timed_toy_fit("run", overlay, PHASES, Path(tmp), False, WARMUP,
                                                   statistics.median)["time/update_s"])
    print(f"3. Prefix-RFT median time/update_s per run ({args.repeats} interleaved rounds):")
    for name, values in results.items():
        print(f"   {name:<48}" + "  ".join(f"{v:.3f}" for v in values))


if __name__ == "__main__":
    main()
