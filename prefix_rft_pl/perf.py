"""Throughput and model FLOPs utilisation (MFU) of a training step.

FLOPs follow PaLM's appendix B (Chowdhery et al. 2022): a forward + backward pass costs, per
token of a sequence of length T,

    6 * N  +  12 * L * H * Q * T

where N is the number of parameters that take part in a matrix product per token, L the
layers, H the query heads and Q the head dimension (H * Q = the attention width). The first
term is the weight matmuls (2 FLOPs per multiply-add, x3 for forward + backward); the second
the attention scores and their weighted sum (QK^T and AV), counted for the full T x T square
as PaLM does (no halving for the causal mask). Two choices to note:

- N leaves out the input embedding table (a lookup, no matmul) and counts the output head
  (V x H, a matmul per token) once, tied to the embeddings or not. Norms and biases count
  as parameters (a rounding error next to the matmuls).
- The attention term is summed over rows with each row's ACTUAL length (prompt + response,
  no padding): sum_rows 12 * L * H * Q * T_row^2. Padding in micro-batches costs time but
  counts no FLOPs, so it lowers MFU, as it should. Recomputation by gradient checkpointing
  is not counted either (that would be hardware FLOPs utilisation, not MFU).

The peak is `model.update.peak_tflops` when set; otherwise a table of dense bf16 peaks of
common GPUs matched on the device name; otherwise (CPU, unknown GPU) a measured matmul
rate, timed once at fit start on tensors that draw no random numbers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

# Dense (no 2:4 sparsity) bf16 tensor-core peaks in TFLOPS, from the vendors' data sheets.
# Matched in this order on the lower-cased torch.cuda.get_device_name: specific names first.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("gh200", 989.0),
    ("h200", 989.0),
    ("h100 pcie", 756.0),
    ("h100 nvl", 835.0),
    ("h100", 989.0),   # SXM
    ("h800", 989.0),
    ("b200", 2250.0),
    ("a100", 312.0),
    ("a800", 312.0),
    ("l40s", 362.0),
    ("l40", 181.0),
    ("a10g", 70.0),
    ("a10", 125.0),
    ("l4", 121.0),
    ("rtx 4090", 165.0),
    ("v100", 125.0),   # fp16: V100 has no bf16
)


def matmul_params(model: torch.nn.Module) -> int:
    """N of the FLOP count: every parameter but the input embedding table, plus the output head
    once when it is tied to the embeddings (its matmul runs either way)."""
    total = sum(p.numel() for p in model.parameters())  # a shared (tied) tensor is listed once
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is embed
    return total - embed.numel() + (embed.numel() if tied else 0)


def attention_width(config) -> tuple[int, int]:
    """(L, H * Q) of a transformers config: layers and query heads x head dimension."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, config.num_attention_heads * head_dim


def train_flops(num_params: int, num_layers: int, attn_width: int, seq_lens: Sequence[int]) -> int:
    """Model FLOPs of one forward + backward pass over rows of lengths `seq_lens` (PaLM, app. B):
    6 * N * sum(T) + 12 * L * (H * Q) * sum(T^2). Exact integer arithmetic."""
    lens = [int(t) for t in seq_lens]
    return 6 * num_params * sum(lens) + 12 * num_layers * attn_width * sum(t * t for t in lens)


def table_peak_tflops(device_name: str) -> float | None:
    """The table's dense bf16 peak of a GPU by its name, or None when it is not listed."""
    name = device_name.lower()
    return next((peak for key, peak in PEAK_TFLOPS if key in name), None)


def measured_matmul_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                          size: int = 512, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` [size, size] matrix products (after one warm-up). The
    operands are constants: nothing is drawn from torch's random number generators."""
    a = torch.full((size, size), 0.5, device=device, dtype=dtype)
    b = torch.full((size, size), 0.25, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / max(best, 1e-9)


def peak_flops(device: torch.device, peak_tflops: float | None = None) -> tuple[float, str]:
    """(peak FLOP/s, where it came from): the setting, else the GPU table, else measured."""
    if peak_tflops is not None:
        return peak_tflops * 1e12, "setting"
    if device.type == "cuda":
        listed = table_peak_tflops(torch.cuda.get_device_name(device))
        if listed is not None:
            return listed * 1e12, "table"
        return measured_matmul_flops(device, torch.bfloat16, size=4096), "measured"
    return measured_matmul_flops(device), "measured"


def step_perf(generated_tokens: int, rollout_s: float, trained_tokens: int, update_s: float, flops: int,
              peak: float) -> dict[str, float]:
    """perf/gen_tokens_per_s (generated / rollout time), perf/tokens_per_s (tokens through the
    update's forward + backward / update time) and perf/mfu (their model FLOPs / update time / peak)."""
    update_s = max(update_s, 1e-9)
    return {"perf/gen_tokens_per_s": generated_tokens / max(rollout_s, 1e-9),
            "perf/tokens_per_s": trained_tokens / update_s,
            "perf/mfu": flops / update_s / peak}
