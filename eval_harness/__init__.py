"""Evaluation harness: `python -m eval_harness run --ckpt PATH` (SPEC 4, issue 5).

Checkpoints (checkpoints.py) -> benchmarks (benchmarks.py) -> generation through the
RolloutEngine protocol, chunk by chunk, graded with `prefix_rft_pl.rewards` and written as
they finish (runner.py, store.py) -> torchmetrics avg@k / pass@k (metrics.py) -> results.json,
results.md, pass_at_k.png (report.py). The protocol defaults are the paper's (config.py).
"""
