"""Lightning callbacks: one job each, independent of one another and of their order.

`PrefixSchedule` and `VLLMWeightSync` are the method's own (the module requires them), so
they live in the core (prefix_rft_pl.prefix_schedule, prefix_rft_pl.weight_sync); they are
exported here so that every callback of a config is spelled `callbacks.<Name>`.
"""

from callbacks.completion_samples import CompletionSamples
from callbacks.entropy_stats import EntropyStats
from prefix_rft_pl.prefix_schedule import PrefixSchedule
from prefix_rft_pl.weight_sync import VLLMWeightSync

__all__ = ["CompletionSamples", "EntropyStats", "PrefixSchedule", "VLLMWeightSync"]
