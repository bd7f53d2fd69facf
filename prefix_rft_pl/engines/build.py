"""One function builds an engine from the engine settings group, for training and for the
eval harness alike."""

from __future__ import annotations

from prefix_rft_pl.config import Engine
from prefix_rft_pl.engines.base import RolloutEngine


def build_engine(settings: Engine, model_path: str, tokenizer, policy=None, seed: int = 0,
                 rank: int | None = None, local_rank: int | None = None) -> RolloutEngine:
    """The engine `settings.kind` over `model_path`.

    hf: over `policy` (training: the trainer's live module) or, without one, over the model
    loaded from `model_path` in `settings.dtype` on `settings.device` (the eval harness).
    vllm: its own copy of the weights from `model_path`; `rank` / `local_rank` when every
    data-parallel rank runs its own engine (the engine's seed is then offset by the rank).
    """
    if settings.kind == "vllm":
        from prefix_rft_pl.engines.vllm import VLLMEngine

        return VLLMEngine(
            model_path, dtype=settings.dtype, seed=seed, max_model_len=settings.max_model_len,
            gpu_memory_utilization=settings.gpu_memory_utilization, tensor_parallel_size=settings.tensor_parallel_size,
            enforce_eager=settings.enforce_eager, enable_sleep_mode=settings.sleep, kv_cache_gib=settings.kv_cache_gib,
            enable_prefix_caching=settings.enable_prefix_caching, fingerprint_weights=settings.fingerprint_weights,
            rank=rank, local_rank=local_rank, engine_kwargs=dict(settings.extra) or None)
    from prefix_rft_pl.engines.hf import HFEngine

    if policy is None:
        import torch
        from transformers import AutoModelForCausalLM

        device = settings.device if settings.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=settings.dtype).to(device)
    return HFEngine(policy, tokenizer, max_batch_size=settings.max_batch_size)
