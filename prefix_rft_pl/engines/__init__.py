"""Rollout engines behind one small protocol. Only `vllm.py` imports vllm, lazily."""

from prefix_rft_pl.engines.base import RolloutEngine, SamplingConfig
from prefix_rft_pl.engines.hf import HFEngine

__all__ = ["RolloutEngine", "SamplingConfig", "HFEngine"]
