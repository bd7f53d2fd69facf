"""The settings of the policy module, in groups that read like a paper's hyper-parameter
appendix: rollout, prefix, loss, update, optim, precision, engine, reward, and the optional
per-method groups (ReLIFT, UFT's hints).

Each group is a frozen dataclass whose attribute docstrings are the `--help` text, checked
at construction (`__post_init__`), so a typo or an impossible value fails before any model
loads, naming its key. Checks across groups are `check_settings`, which the module's
constructor runs. Variants (the prefix rule, the aggregation) are objects chosen by
`class_path` (prefix_rft_pl/variants.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from jsonargparse import lazy_instance

from prefix_rft_pl.reward_components import RewardComponent, as_component, component_problems
from prefix_rft_pl.variants import Aggregation, DrGRPOConstant, Hybrid, PPOPrefix, PrefixRule, describe

SelectionMode = Literal["top", "bottom", "random", "none", "freeze"]
DType = Literal["float32", "bfloat16", "float16"]


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ValueError(f"model.{key}: {message}")


@dataclass(frozen=True)
class Rollout:
    """Sampling of the G trajectories of every prompt (SPEC 2.1-2.2)."""

    group_size: int = 8
    """G, trajectories per prompt (paper: 8)."""
    num_hybrid: int = 1
    """G_hyb, trajectories per prompt that continue a demonstration prefix (paper: 1; RFT: 0)."""
    max_response_tokens: int = 1024
    """Budget of a response, prefix included; also the Dr. GRPO normaliser."""
    min_prefix_tokens: int = 0
    """Lower clamp of the prefix length L in tokens."""
    temperature: float = 1.0
    """Rollout temperature (paper: 1.0); log-probs are taken at the same temperature."""
    top_p: float = 1.0
    """Rollout nucleus sampling."""
    val_temperature: float = 0.0
    """Sampling temperature of validation (0 = greedy)."""

    def __post_init__(self):
        _require(self.group_size >= 1, "rollout.group_size", f"must be >= 1, got {self.group_size}")
        _require(0 <= self.num_hybrid <= self.group_size, "rollout.num_hybrid",
                 f"must be in [0, model.rollout.group_size = {self.group_size}], got {self.num_hybrid}")
        _require(self.max_response_tokens >= 1, "rollout.max_response_tokens",
                 f"must be >= 1, got {self.max_response_tokens}")
        _require(self.min_prefix_tokens >= 0, "rollout.min_prefix_tokens",
                 f"must be >= 0, got {self.min_prefix_tokens}")
        _require(self.temperature > 0, "rollout.temperature", f"must be > 0, got {self.temperature}")
        _require(0 < self.top_p <= 1, "rollout.top_p", f"must be in (0, 1], got {self.top_p}")
        _require(self.val_temperature >= 0, "rollout.val_temperature", f"must be >= 0, got {self.val_temperature}")


@dataclass(frozen=True)
class Prefix:
    """What the loss does with demonstration-prefix tokens (SPEC 2.6)."""

    token_keep: float = 0.2
    """k, fraction of the batch's prefix tokens that keep their advantage (paper: 0.2)."""
    selection: SelectionMode = "top"
    """Which k%: top / bottom / random by entropy, none (keep all), freeze (keep none)."""
    rule: PrefixRule = field(default_factory=lambda: lazy_instance(PPOPrefix))
    """Loss on prefix tokens: PPOPrefix (Prefix-RFT), ShapedPrefix (LUFFY), SFTPrefix (SFT)."""

    def __post_init__(self):
        _require(0 <= self.token_keep <= 1, "prefix.token_keep", f"must be in [0, 1], got {self.token_keep}")
        _require(isinstance(self.rule, PrefixRule), "prefix.rule",
                 f"must be a prefix_rft_pl.variants.PrefixRule, got {type(self.rule).__name__}")


@dataclass(frozen=True)
class Clip:
    """The ratio clip of the surrogate (SPEC 2.7)."""

    eps_low: float = 0.2
    """Lower clip range of the ratio (1.0 with eps_high inf: no clip)."""
    eps_high: float = 0.2
    """Upper clip range (clip-higher when > eps_low)."""
    dual_clip: float | None = None
    """c of the dual clip of negative-advantage tokens (e.g. 3.0); None disables."""

    def __post_init__(self):
        _require(0 <= self.eps_low <= 1, "loss.clip.eps_low", f"must be in [0, 1], got {self.eps_low}")
        _require(self.eps_high >= 0, "loss.clip.eps_high", f"must be >= 0, got {self.eps_high}")
        _require(self.dual_clip is None or self.dual_clip > 1, "loss.clip.dual_clip",
                 f"must be > 1 or null, got {self.dual_clip}")


@dataclass(frozen=True)
class Loss:
    """Advantage, surrogate, aggregation and the extra terms of the baselines (SPEC 2.4, 2.7, 3)."""

    clip: Clip = field(default_factory=Clip)
    """The ratio clip."""
    aggregation: Aggregation = field(default_factory=lambda: lazy_instance(DrGRPOConstant))
    """DrGRPOConstant (paper), TokenMean, SeqMeanTokenMean, TokenSum (LUFFY's, ReLIFT's)."""
    advantage_baseline: Literal["group", "ordinary"] = "group"
    """Mean over the whole group (paper) or over the ordinary rollouts only (reference code)."""
    advantage_std: bool = False
    """Divide advantages by the group std (GRPO) instead of Dr. GRPO's none."""
    tis_cap: float | None = None
    """Truncated importance-sampling cap on generated tokens; None disables."""
    entropy_coef: float = 0.0
    """Entropy bonus (LUFFY, ReLIFT, UFT: 0.001): minus coef x the token-mean entropy of the mini-batch."""
    kl_coef: float = 0.0
    """UFT's KL term: coef x token-mean k3 KL to the frozen initial policy (loaded a second time); 0 disables."""
    demo_sft_coef: float = 0.0
    """RL w/ SFT loss: coef x token-mean CE on the mini-batch's demonstrations (UFT: on its hints); 0 disables."""
    hybrid: Hybrid | None = None
    """A row beyond the paper's table, by class_path: prefix_rft_pl.baselines.hybrids.Chord, SRFT or HPT."""

    def __post_init__(self):
        _require(isinstance(self.aggregation, Aggregation), "loss.aggregation",
                 f"must be a prefix_rft_pl.variants.Aggregation, got {type(self.aggregation).__name__}")
        if self.hybrid is not None:
            name = type(self.hybrid).__name__
            _require(self.hybrid.needs_sft_coef == (self.demo_sft_coef > 0), "loss.demo_sft_coef",
                     f"{name} needs it > 0 (its CE)" if self.hybrid.needs_sft_coef
                     else f"{name} weighs its CE itself (mu(t)): set it to 0, got {self.demo_sft_coef}")
        _require(self.tis_cap is None or self.tis_cap > 0, "loss.tis_cap", f"must be > 0 or null, got {self.tis_cap}")
        for key in ("entropy_coef", "kl_coef", "demo_sft_coef"):
            _require(getattr(self, key) >= 0, f"loss.{key}", f"must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class Update:
    """How one rollout batch becomes optimiser steps."""

    ppo_epochs: int = 1
    """Passes over each rollout batch."""
    mini_batches: int = 1
    """Optimiser steps per pass (the rollout batch is split into this many)."""
    micro_batch_size: int = 8
    """Trajectories per forward/backward (does not change the gradient)."""
    logprob_chunk_size: int = 128
    """Tokens per chunk of the log-prob computation: one [chunk, V] float32 block at a time
    (128: 0.22x the naive peak at V=151,936); raise on GPUs for speed."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (saves memory)."""
    skip_rows_without_gradient: bool = True
    """Leave rows whose loss has no gradient out of the update (exact); False runs every row
    (benchmarks/trl_compare.py --all-rows measures the difference)."""
    peak_tflops: float | None = None
    """Peak of one device in TFLOPS for perf/mfu (the update's MFU); None: the table of GPUs (dense bf16)
    by device name, else a matmul rate measured at fit start (CPU). Changes no training number."""

    def __post_init__(self):
        for key in ("ppo_epochs", "mini_batches", "micro_batch_size", "logprob_chunk_size"):
            _require(getattr(self, key) >= 1, f"update.{key}", f"must be >= 1, got {getattr(self, key)}")
        _require(self.peak_tflops is None or self.peak_tflops > 0, "update.peak_tflops",
                 f"must be > 0 or null, got {self.peak_tflops}")


@dataclass(frozen=True)
class Optim:
    """The optimiser of the RL update."""

    name: Literal["adamw", "adamw8bit", "paged_adamw8bit"] = "adamw"
    """adamw, or bitsandbytes 8-bit AdamW (paged on GPUs)."""
    lr: float = 1e-6
    """Learning rate (paper: 1e-6)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping by total norm."""
    warmup_steps: int = 0
    """Optimiser steps of linear warm-up from 0 to lr (transformers' schedules); 0: none."""
    decay: Literal["constant", "linear", "cosine"] = "constant"
    """After the warm-up: constant (paper), linear to 0, or cosine to min_lr_ratio x lr, over trainer.max_steps."""
    min_lr_ratio: float = 0.0
    """The cosine decay's floor as a fraction of lr."""

    def __post_init__(self):
        _require(self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        _require(self.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _require(0 <= self.min_lr_ratio < 1, "optim.min_lr_ratio", f"must be in [0, 1), got {self.min_lr_ratio}")
        _require(self.min_lr_ratio == 0 or self.decay == "cosine", "optim.min_lr_ratio",
                 f"applies to optim.decay: cosine only, got decay {self.decay}")
        _require(self.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(self.max_grad_norm > 0, "optim.max_grad_norm", f"must be > 0, got {self.max_grad_norm}")


@dataclass(frozen=True)
class Precision:
    """Numerics: what the optimiser steps, what forward/backward compute in, what gradients reduce in."""

    master: DType = "float32"
    """dtype of the policy's parameters, which the optimiser steps (float32: AdamW at lr 1e-6 on
    bf16 weights rounds most updates away)."""
    compute: DType | None = None
    """FSDP2 mixed precision (ModelParallelStrategy): dtype of the gathered parameters in forward
    and backward (bfloat16 on GPUs); None computes in `master`. On one device use
    trainer.precision bf16-mixed instead."""
    reduce: DType | None = None
    """FSDP2: dtype of the gradient reduce-scatter (float32); None uses `compute`."""
    allow_half_precision_weights: bool = False
    """Let the optimiser step bf16/fp16 parameters (refused by default: one AdamW step at lr 1e-6
    changed 1.1% of a model's bf16 parameters)."""

    def __post_init__(self):
        if self.master != "float32" and not self.allow_half_precision_weights:
            from prefix_rft_pl.optim import MASTER_WEIGHTS_HOWTO, HalfPrecisionWeightsError

            raise HalfPrecisionWeightsError(
                f"model.precision.master: the optimiser would step {self.master} weights; at the paper's lr 1e-6 "
                f"AdamW's updates round away in half precision. Keep float32 master weights: {MASTER_WEIGHTS_HOWTO}")
        _require(self.reduce is None or self.compute is not None, "precision.reduce",
                 "needs precision.compute (both are FSDP2's mixed-precision policy)")


@dataclass(frozen=True)
class Engine:
    """The rollout engine, in training and in the eval harness (one function builds it:
    prefix_rft_pl.engines.build_engine)."""

    kind: Literal["hf", "vllm"] = "hf"
    """hf (transformers generate; in training on the live policy) or vllm (its own copy of the weights)."""
    dtype: str = "auto"
    """vLLM's dtype (auto: the checkpoint's); the eval harness's hf model dtype."""
    max_model_len: int | None = None
    """Longest prompt + prefix + response; None takes the model's."""
    gpu_memory_utilization: float = 0.5
    """Fraction of GPU memory vLLM may take (weights + KV); below vLLM's 0.92 when the trainer shares the GPU."""
    kv_cache_gib: float | None = None
    """vLLM KV cache in GiB; overrides gpu_memory_utilization's share. Always set it on CPU."""
    sleep: bool = False
    """vLLM sleep mode: free GPU memory between rollouts (refused with a warning on CPU)."""
    enforce_eager: bool = False
    """vLLM without compilation or CUDA graphs: faster start, slower decode."""
    tensor_parallel_size: int = 1
    """GPUs per vLLM engine."""
    enable_prefix_caching: bool = True
    """vLLM's prefix caching (the G rollouts of a prompt share it)."""
    fingerprint_weights: bool = True
    """vLLM in training: fingerprint the engine's weights as it samples, compared exactly with the trainer's."""
    max_batch_size: int = 256
    """hf: sequences per generate call."""
    device: str = "auto"
    """hf engine in the eval harness: auto (cuda if available), cpu, cuda:0, ..."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments of vllm.LLM."""

    def __post_init__(self):
        _require(0 < self.gpu_memory_utilization <= 1, "engine.gpu_memory_utilization",
                 f"must be in (0, 1], got {self.gpu_memory_utilization}")
        _require(self.kv_cache_gib is None or self.kv_cache_gib > 0, "engine.kv_cache_gib",
                 f"must be > 0 or null, got {self.kv_cache_gib}")
        _require(self.max_model_len is None or self.max_model_len > 0, "engine.max_model_len",
                 f"must be > 0 or null, got {self.max_model_len}")


@dataclass(frozen=True)
class Reward:
    """The reward: a weighted sum of components, each scored in worker processes with a hard time
    bound per completion (prefix_rft_pl/reward_components.py). The default is SPEC 2.3's alone:
    last \\boxed{} + math-verify."""

    workers: int = 2
    """Processes grading answers (each component that runs in workers has this many)."""
    timeout_s: float = 2.0
    """Hard bound on one completion's score by one component; over it that score is 0 (counted)."""
    components: list[RewardComponent] = field(default_factory=lambda: [
        {"class_path": "prefix_rft_pl.reward_components.Accuracy", "init_args": {"name": "accuracy", "weight": 1.0}}])
    """The reward's terms, by class_path, each with a name (logged as reward/<name>) and a weight:
    Accuracy (math-verify, the paper's) or a subclass of RewardComponent of your own."""

    def __post_init__(self):
        _require(self.workers >= 1, "reward.workers", f"must be >= 1, got {self.workers}")
        _require(self.timeout_s > 0, "reward.timeout_s", f"must be > 0, got {self.timeout_s}")
        problems = component_problems(self.component_objects)
        if problems:
            raise ValueError("; ".join(f"model.{key}: {message}" for key, message in problems))

    @cached_property
    def component_objects(self) -> list[RewardComponent]:
        """The components as objects: the CLI gives objects; a spec ({class_path, init_args}: the
        default, which jsonargparse can print, or a checkpoint's hparams) is built here."""
        return [as_component(c, f"model.reward.components[{i}]") for i, c in enumerate(self.components)]


@dataclass(frozen=True)
class ReLIFT:
    """ReLIFT (SPEC 3): prompts whose G rollouts all fail go into one buffer shared by all ranks;
    once it holds a global batch, an SFT step on their demonstrations follows the RL update, on its
    own AdamW. The SFT step counts neither towards max_steps nor towards the prefix schedule."""

    sft_lr: float | None = None
    """Learning rate of the SFT optimiser; None = optim.lr."""
    sft_max_grad_norm: float = 1.0
    """Gradient clipping of the SFT step (ReLIFT's sft_grad_clip, 1.0)."""
    sft_entropy_coef: float = 0.0
    """Entropy bonus of the SFT step (ReLIFT: 0.001)."""

    def __post_init__(self):
        _require(self.sft_lr is None or self.sft_lr > 0, "relift.sft_lr", f"must be > 0 or null, got {self.sft_lr}")
        _require(self.sft_max_grad_norm > 0, "relift.sft_max_grad_norm", f"must be > 0, got {self.sft_max_grad_norm}")


@dataclass(frozen=True)
class Hints:
    """UFT (SPEC 3): a hint (the first k of up to max_segments segments of the first demonstration,
    k ~ Binomial(segments, p(t)), p(t) a cosine from prob_start to prob_end over `steps` rollout
    batches, then none) in the prompt of all of a prompt's rollouts; loss.demo_sft_coef then
    weighs the token-mean CE on the hints."""

    steps: int = 300
    """Rollout batches with hints (UFT: 300 of 500)."""
    prob_start: float = 0.95
    """UFT's p(0)."""
    prob_end: float = 0.05
    """UFT's p(steps)."""
    max_segments: int = 5
    """UFT's number of hint segments."""

    def __post_init__(self):
        _require(self.steps >= 1, "hints.steps", f"must be >= 1, got {self.steps}")
        for key in ("prob_start", "prob_end"):
            _require(0 <= getattr(self, key) <= 1, f"hints.{key}", f"must be in [0, 1], got {getattr(self, key)}")
        _require(self.max_segments >= 1, "hints.max_segments", f"must be >= 1, got {self.max_segments}")


def check_settings(rollout: Rollout, prefix: Prefix, loss: Loss, update: Update, optim: Optim,
                   precision: Precision, engine: Engine) -> None:
    """Checks across groups, before any model loads; each error names the keys involved."""
    if loss.advantage_baseline == "ordinary" and rollout.num_hybrid == rollout.group_size:
        raise ValueError(f"model.loss.advantage_baseline: 'ordinary' takes the baseline from the ordinary rollouts, "
                         f"but model.rollout.num_hybrid = model.rollout.group_size = {rollout.group_size} leaves none; "
                         "use 'group'")
    if engine.kind == "hf" and engine.sleep:
        raise ValueError("model.engine.sleep: sleep mode is vLLM's; the hf engine shares the trainer's weights")


def plain(value: Any) -> Any:
    """Settings as plain data (dicts, lists, numbers, strings; variants as {class_path, init_args})
    for the checkpoint's hyper_parameters: a checkpoint loads with torch's weights_only."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (PrefixRule, Aggregation, RewardComponent, Hybrid)):
        return describe(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Settings:
    """All groups of one module, as the update pipeline reads them."""

    rollout: Rollout = field(default_factory=Rollout)
    prefix: Prefix = field(default_factory=Prefix)
    loss: Loss = field(default_factory=Loss)
    update: Update = field(default_factory=Update)
    optim: Optim = field(default_factory=Optim)
    precision: Precision = field(default_factory=Precision)
    engine: Engine = field(default_factory=Engine)
    reward: Reward = field(default_factory=Reward)
    relift: ReLIFT | None = None
    hints: Hints | None = None

    def __post_init__(self):
        check_settings(self.rollout, self.prefix, self.loss, self.update, self.optim, self.precision, self.engine)


# The flat keys of the module before the settings groups, and where each went.
MOVED = {
    "dtype": "precision.master", "fsdp_param_dtype": "precision.compute", "fsdp_reduce_dtype": "precision.reduce",
    "allow_half_precision_weights": "precision.allow_half_precision_weights",
    "group_size": "rollout.group_size", "num_hybrid": "rollout.num_hybrid",
    "max_response_tokens": "rollout.max_response_tokens", "min_prefix_tokens": "rollout.min_prefix_tokens",
    "temperature": "rollout.temperature", "top_p": "rollout.top_p", "val_temperature": "rollout.val_temperature",
    "prefix_token_keep": "prefix.token_keep", "prefix_selection": "prefix.selection",
    "prefix_rule": "prefix.rule (class_path: prefix_rft_pl.variants.PPOPrefix, ShapedPrefix or SFTPrefix)",
    "prefix_sft_weight": "prefix.rule.init_args.weight (SFTPrefix)",
    "shaping_gamma": "prefix.rule.init_args.gamma (ShapedPrefix)",
    "advantage_baseline": "loss.advantage_baseline", "advantage_std": "loss.advantage_std",
    "eps_low": "loss.clip.eps_low", "eps_high": "loss.clip.eps_high", "dual_clip": "loss.clip.dual_clip",
    "aggregation": "loss.aggregation (class_path: prefix_rft_pl.variants.DrGRPOConstant, TokenMean, "
                   "SeqMeanTokenMean or TokenSum)",
    "tis_cap": "loss.tis_cap", "entropy_coef": "loss.entropy_coef", "kl_coef": "loss.kl_coef",
    "demo_sft_coef": "loss.demo_sft_coef",
    "ppo_epochs": "update.ppo_epochs", "mini_batches": "update.mini_batches",
    "micro_batch_size": "update.micro_batch_size", "logprob_chunk_size": "update.logprob_chunk_size",
    "gradient_checkpointing": "update.gradient_checkpointing",
    "optimizer": "optim.name", "learning_rate": "optim.lr", "weight_decay": "optim.weight_decay",
    "max_grad_norm": "optim.max_grad_norm",
    "engine_options": "engine (a group: kind, dtype, max_model_len, gpu_memory_utilization, kv_cache_gib, sleep, "
                      "enforce_eager, ...; enable_sleep_mode is engine.sleep, engine_kwargs engine.extra)",
    "reward_workers": "reward.workers", "reward_timeout_s": "reward.timeout_s",
    "relift_sft_lr": "relift.sft_lr", "relift_sft_max_grad_norm": "relift.sft_max_grad_norm",
    "relift_sft_entropy_coef": "relift.sft_entropy_coef",
    "hint_steps": "hints.steps", "hint_prob_start": "hints.prob_start", "hint_prob_end": "hints.prob_end",
    "hint_max_segments": "hints.max_segments",
    "max_logprob_diff": "nowhere: removed (the engine's weights are verified exactly every step; the log-prob gap "
                        "is logged as rollout/logprob_diff_*)",
}


def moved_keys(model: dict) -> list[str]:
    """Messages for the old flat keys (and the old string engine / boolean relift) in a config's
    `model` section; empty when it uses the groups."""
    messages = [f"model.{key} moved to model.{MOVED[key]}" for key in model if key in MOVED]
    if isinstance(model.get("engine"), str):
        messages.append(f"model.engine is a group now: write model.engine.kind: {model['engine']}")
    if isinstance(model.get("relift"), bool):
        messages.append("model.relift is a group now: write `relift: {}` (ReLIFT with its defaults) or leave it out")
    return messages
