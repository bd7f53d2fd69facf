"""Lightning callbacks: one job each, independent of one another and of their order."""

from callbacks.entropy_stats import EntropyStats
from callbacks.prefix_schedule import PrefixSchedule

__all__ = ["EntropyStats", "PrefixSchedule", "VLLMWeightSync"]


def __getattr__(name):  # VLLMWeightSync is imported lazily: it is only needed with vLLM
    if name == "VLLMWeightSync":
        from callbacks.weight_sync import VLLMWeightSync

        return VLLMWeightSync
    raise AttributeError(name)
