"""PrefixRFTModule: the policy and the Prefix-RFT update (SPEC section 2), wiring only.

One training batch = B prompts. The module samples G trajectories per prompt (G - G_hyb
ordinary, G_hyb continuing from a demonstration prefix), scores them, computes Dr. GRPO
advantages and old log-probs, masks low-entropy prefix tokens, then runs
`ppo_epochs x mini_batches` optimiser steps (manual optimisation; the passes over the
policy are in update.py, the loss math in losses.py). The baselines of SPEC section 3 are
settings of this same module (see configs/).
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from prefix_rft_pl import losses, passes, update
from prefix_rft_pl.engines.base import SamplingConfig
from prefix_rft_pl.prefix import (SelectionMode, TrajectoryBatch, assemble_trajectories, build_group_requests,
                                  pad_trajectories)
from prefix_rft_pl.types import PromptDemoBatch, Rollout


class PrefixRFTModule(L.LightningModule):
    def __init__(
        self,
        policy: str,
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        group_size: int = 8,
        num_hybrid: int = 1,
        max_response_tokens: int = 1024,
        min_prefix_tokens: int = 0,
        prefix_token_keep: float = 0.2,
        prefix_selection: SelectionMode = "top",
        prefix_rule: Literal["ppo", "shaped", "sft"] = "ppo",
        prefix_sft_weight: float = 1.0,
        shaping_gamma: float = 0.1,
        advantage_baseline: Literal["group", "ordinary"] = "group",
        advantage_std: bool = False,
        eps_low: float = 0.2,
        eps_high: float = 0.2,
        dual_clip: float | None = None,
        aggregation: Literal["constant", "token_mean", "seq_mean_token_mean", "token_sum"] = "constant",
        ppo_epochs: int = 1,
        mini_batches: int = 1,
        micro_batch_size: int = 8,
        logprob_chunk_size: int = 128,
        optimizer: Literal["adamw", "adamw8bit", "paged_adamw8bit"] = "adamw",
        learning_rate: float = 1e-6,
        weight_decay: float = 0.0,
        max_grad_norm: float = 1.0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        engine: Literal["hf", "vllm"] = "hf",
        engine_options: dict[str, Any] | None = None,
        max_logprob_diff: float | None = None,
        tis_cap: float | None = None,
        reward_workers: int = 2,
        reward_timeout_s: float = 2.0,
        val_temperature: float = 0.0,
        gradient_checkpointing: bool = False,
        fsdp_param_dtype: Literal["bfloat16", "float16", "float32"] | None = None,
        fsdp_reduce_dtype: Literal["bfloat16", "float16", "float32"] | None = None,
        demo_sft_coef: float = 0.0,
        relift: bool = False,
        entropy_coef: float = 0.0,
        kl_coef: float = 0.0,
        hint_steps: int = 0,
        hint_prob_start: float = 0.95,
        hint_prob_end: float = 0.05,
        hint_max_segments: int = 5,
        relift_sft_lr: float | None = None,
        relift_sft_max_grad_norm: float = 1.0,
        relift_sft_entropy_coef: float = 0.0,
        allow_half_precision_weights: bool = False,
        seed: int = 0,
    ):
        """
        Args:
            policy: HF hub id or local directory of the policy (and its tokenizer).
            dtype: parameter dtype of the policy (bfloat16 on GPUs).
            group_size: G, trajectories per prompt (paper: 8).
            num_hybrid: G_hyb, trajectories per prompt that continue a demonstration prefix (paper: 1; RFT: 0).
            max_response_tokens: budget of a response, prefix included; also the Dr. GRPO normaliser.
            min_prefix_tokens: lower clamp of the prefix length L in tokens.
            prefix_token_keep: k, fraction of the batch's prefix tokens that keep their advantage (paper: 0.2).
            prefix_selection: which k%: top / bottom / random by entropy, none (keep all), freeze (keep none).
            prefix_rule: loss on prefix tokens: ppo (Prefix-RFT), shaped (LUFFY), sft (SFT; RL w/ SFT loss at weight 0).
            prefix_sft_weight: weight of the SFT loss on prefix tokens when prefix_rule=sft.
            shaping_gamma: LUFFY's policy shaping f(p) = p / (p + gamma).
            advantage_baseline: mean over the whole group (paper) or over ordinary rollouts only (reference code).
            advantage_std: divide advantages by the group std (GRPO) instead of Dr. GRPO's none.
            eps_low: lower clip range of the ratio.
            eps_high: upper clip range (clip-higher when > eps_low).
            dual_clip: c for the dual clip of negative-advantage tokens (e.g. 3.0); None disables.
            aggregation: constant (Dr. GRPO), token_mean, seq_mean_token_mean, or token_sum (LUFFY's and
                ReLIFT's `loss_remove_token_mean`: the rank's token sum / max_response_tokens).
            ppo_epochs: passes over each rollout batch.
            mini_batches: optimiser steps per pass (the rollout batch is split into this many).
            micro_batch_size: trajectories per forward/backward (does not change the gradient).
            logprob_chunk_size: tokens per chunk of the log-prob computation: one [chunk, V] float32 block at
                a time (128: 0.22x the naive peak at V=151,936, benchmarks/logprob_memory.py); raise on GPUs for speed.
            optimizer: adamw, or bitsandbytes 8-bit AdamW (paged on GPUs).
            learning_rate: paper: 1e-6.
            weight_decay: AdamW weight decay.
            max_grad_norm: gradient clipping by total norm.
            temperature: rollout temperature (paper: 1.0); log-probs are taken at the same temperature.
            top_p: rollout nucleus sampling.
            engine: rollout engine: hf (generate on the live policy) or vllm (colocated engine).
            engine_options: keyword arguments of the engine (vLLM: gpu_memory_utilization, max_model_len, ...).
            max_logprob_diff: removed; must stay None. A vLLM engine's weights are now compared exactly
                with the trainer's before every rollout (a fingerprint, prefix_rft_pl.engines.checks), and
                the log-prob gap is logged only, as rollout/logprob_diff_{mean,p99,max}.
            tis_cap: truncated importance sampling cap on generated tokens; None disables.
            reward_workers: processes grading answers with math-verify.
            reward_timeout_s: hard time bound per graded answer; over it the answer scores 0.
            val_temperature: sampling temperature of validation (0 = greedy).
            gradient_checkpointing: recompute activations in backward (saves memory).
            fsdp_param_dtype: FSDP2 mixed precision (ModelParallelStrategy): dtype of the gathered
                parameters in forward and backward (e.g. bfloat16 on GPUs); None keeps `dtype`.
            fsdp_reduce_dtype: FSDP2 mixed precision: dtype of the gradient reduce-scatter
                (e.g. float32); None uses fsdp_param_dtype.
            demo_sft_coef: beta of "RL w/ SFT loss": every optimiser step adds beta x the token-mean
                cross-entropy on the batch's demonstrations (0 disables).
            relift: ReLIFT: prompts whose G rollouts all fail are collected in one buffer shared by all
                ranks, and once it holds a global batch of them, an SFT step on their demonstrations is
                interleaved after the RL update. The SFT step counts neither towards `max_steps` nor
                towards the prefix schedule (as in ReLIFT's code). The newest failures leave the buffer
                first, and the SFT step has its own AdamW (ReLIFT's `actor_sft_optimizer`).
            entropy_coef: entropy bonus of the RL update (LUFFY, ReLIFT, UFT: 0.001): minus coef x the
                token-mean entropy over the mini-batch's response tokens (0 disables).
            kl_coef: UFT's KL term: coef x the token-mean low-variance KL (k3) to a frozen reference
                policy (the initial `policy`, loaded a second time); 0 disables (no reference kept).
            hint_steps: UFT: > 0 puts a hint (the first k of up to `hint_max_segments` segments of the
                first demonstration, k ~ Binomial(segments, p(t)), p(t) a cosine from hint_prob_start
                to hint_prob_end over `hint_steps` rollout batches, then no hint) in the prompt of all
                of a prompt's rollouts; `demo_sft_coef` then weighs the token-mean CE on the hints
                instead of on the demonstrations. 0 disables.
            hint_prob_start: UFT's p(0) (0.95).
            hint_prob_end: UFT's p(hint_steps) (0.05).
            hint_max_segments: UFT's number of hint segments (5).
            relift_sft_lr: learning rate of ReLIFT's SFT optimiser; None = `learning_rate`.
            relift_sft_max_grad_norm: gradient clipping of ReLIFT's SFT step (its `sft_grad_clip`, 1.0).
            relift_sft_entropy_coef: entropy bonus of ReLIFT's SFT step (0.001).
            allow_half_precision_weights: let the optimiser step bf16/fp16 parameters. Refused by
                default: AdamW at lr 1e-6 on bf16 weights rounds most updates away (one step changed
                1.1% of the parameters). Keep float32 master weights and compute in bf16 with
                `fsdp_param_dtype` (FSDP2) or `trainer.precision: bf16-mixed` (one device).
            seed: seed of prefix-length and demonstration sampling.
        """
        super().__init__()
        self.save_hyperparameters()
        if max_logprob_diff is not None:
            raise ValueError("model.max_logprob_diff was removed: delete it from the config. The engine's weights "
                             "are verified exactly every step, and a log-prob threshold trips on bf16 noise")
        self.automatic_optimization = False
        self.prefix_low, self.prefix_high = 0.95, 0.95  # set every step by callbacks.PrefixSchedule
        self.policy = None
        self.tokenizer = None
        self.engine = None
        self.reward_fn = None
        self.timings: dict[str, float] = {}
        self.relift_buffer: list = []  # ReLIFT: prompts whose rollouts all failed (all ranks'), waiting for SFT
        self.relift_sft_steps = 0
        self.reference = None  # UFT's frozen reference policy (kl_coef > 0)

    # ---------------------------------------------------------------- setup
    def configure_model(self) -> None:
        if self.policy is not None:
            return
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.hparams.policy)
        self.policy = AutoModelForCausalLM.from_pretrained(self.hparams.policy, dtype=getattr(torch, self.hparams.dtype))
        self.policy.train()  # from_pretrained returns eval mode
        if self.hparams.gradient_checkpointing:
            self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if getattr(self, "device_mesh", None) is not None:
            from prefix_rft_pl.distributed import shard_policy

            shard_policy(self.policy, self.device_mesh, self.hparams.fsdp_param_dtype, self.hparams.fsdp_reduce_dtype)
        if self.hparams.kl_coef > 0:
            self._load_reference()

    def _load_reference(self) -> None:
        """UFT's KL reference: the initial policy, frozen (sharded like the policy under FSDP2)."""
        from transformers import AutoModelForCausalLM

        reference = AutoModelForCausalLM.from_pretrained(self.hparams.policy, dtype=getattr(torch, self.hparams.dtype))
        self.reference = reference.eval().requires_grad_(False)
        if getattr(self, "device_mesh", None) is not None:
            from prefix_rft_pl.distributed import shard_policy

            shard_policy(self.reference, self.device_mesh, self.hparams.fsdp_param_dtype, self.hparams.fsdp_reduce_dtype)

    def setup(self, stage: str) -> None:
        from prefix_rft_pl.rewards import MathVerifyReward

        self.configure_model()
        self.reward_fn = MathVerifyReward(self.hparams.reward_workers, self.hparams.reward_timeout_s)

    def on_fit_start(self) -> None:
        from callbacks.weight_sync import require_weight_sync

        if self.engine is None:
            self.engine = self._build_engine()
        require_weight_sync(self.trainer, self.engine)

    def _build_engine(self):
        options = dict(self.hparams.engine_options or {})
        if self.hparams.engine == "vllm":
            from prefix_rft_pl.engines.vllm import VLLMEngine

            if self.trainer.world_size > 1:  # one engine per rank, built by all ranks here (a collective)
                options |= {"rank": self.global_rank, "local_rank": self.local_rank}
            return VLLMEngine(self.hparams.policy, **options)
        from prefix_rft_pl.engines.hf import HFEngine

        return HFEngine(self.policy, self.tokenizer, **options)

    def configure_optimizers(self):
        from prefix_rft_pl.optim import build_optimizer, check_master_weights

        check_master_weights(self.policy.named_parameters(), self.hparams.allow_half_precision_weights)
        hp = self.hparams
        optimizer = build_optimizer(hp.optimizer, self.policy.parameters(), hp.learning_rate, hp.weight_decay)
        if not hp.relift:
            return optimizer
        sft_lr = hp.learning_rate if hp.relift_sft_lr is None else hp.relift_sft_lr
        return [optimizer, build_optimizer(hp.optimizer, self.policy.parameters(), sft_lr, hp.weight_decay)]

    def _optimizer(self, index: int = 0):
        """Lightning's wrapper of optimiser `index` (0: the RL one; 1: ReLIFT's SFT one)."""
        optimizers = self.optimizers()
        return optimizers[index] if isinstance(optimizers, list) else optimizers

    # ---------------------------------------------------------------- training
    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # token-id lists: tensors are built, on the right device, after the rollout

    def training_step(self, batch: PromptDemoBatch, batch_idx: int) -> dict[str, Tensor]:
        hp = self.hparams
        sft_items = batch.items  # targets of the demonstration CE (demo_sft_coef); UFT: the hints
        if hp.hint_steps > 0:
            from prefix_rft_pl.baselines import uft_hint_batch

            batch, sft_items = uft_hint_batch(self, batch)
        with self._timed("rollout"):
            trajectories = self._rollout(batch)
        with self._timed("reward"):
            hints = [item.demo_ids[0] if item.demo_ids else [] for item in sft_items] if hp.hint_steps > 0 else None
            rewards, reward_stats = self._score(batch, trajectories, hints)
        tb = pad_trajectories(trajectories, self.tokenizer.pad_token_id)
        is_hybrid = tb.prefix_mask.any(-1).view(len(batch), hp.group_size)        # [B, G]
        baseline = ~is_hybrid if hp.advantage_baseline == "ordinary" and hp.num_hybrid < hp.group_size else None
        advantages = losses.group_advantages(rewards, baseline, hp.advantage_std).view(-1)  # [N]
        regularised = hp.entropy_coef > 0 or hp.kl_coef > 0
        reuse = passes.reuses_old_logprobs(hp.ppo_epochs, hp.mini_batches, hp.tis_cap)
        # decided over all ranks: the forward passes and the engine check below are collectives
        if hp.prefix_rule != "sft" or int(update.gather_counts(self, int(tb.generated_mask.any())).max()) > 0:
            candidates = passes.rows_with_gradient(advantages[:, None] * tb.mask, tb.prefix_mask, hp.prefix_rule, regularised)
            pass_rows = passes.separate_pass_rows(reuse, candidates, tb.prefix_mask)  # [N]
            with self._timed("logprob"):
                old_logprobs, entropy = update.forward_logprobs(self, tb, with_entropy=True, grad=False, rows=pass_rows)
            self._check_engine_weights()
            kept = update.select_prefix(self, entropy, tb.prefix_mask)            # [N, T]
        else:  # pure SFT: no ratio, no advantage, no selection -- skip the extra forward pass
            old_logprobs, entropy, kept, reuse = torch.zeros(tb.mask.shape), None, tb.prefix_mask, False
        token_advantages = advantages[:, None] * (tb.generated_mask | kept)        # [N, T]
        is_weights = self._is_weights(old_logprobs, tb)
        ref_logprobs = update.forward_logprobs(self, tb, False, False, self.reference)[0] if hp.kl_coef > 0 else None
        update_rows = passes.rows_with_gradient(token_advantages, tb.prefix_mask, hp.prefix_rule, regularised)
        self.log("train/update_rows", update_rows.float().mean())  # the rest add nothing to the gradient
        with self._timed("update"):
            loss, grad_norm, current = update.optimise(self, tb, None if reuse else old_logprobs, token_advantages,
                                                       is_weights, sft_items, ref_logprobs, update_rows)
            if hp.relift:
                from prefix_rft_pl.baselines import relift_step

                relift_step(self, batch, rewards)
        if reuse:  # the update's own log-probs and entropies on the rows the separate pass left out
            old_logprobs, entropy = (torch.where(pass_rows[:, None], a, b) for a, b in zip((old_logprobs, entropy), current))
        self._log_step(rewards, is_hybrid, tb, loss, grad_norm, reward_stats, old_logprobs if entropy is not None else None)
        out = {"loss": loss, "mask": tb.mask, "prefix_mask": tb.prefix_mask, "kept": kept,
               "advantages": advantages.view(len(batch), hp.group_size)}
        return out if entropy is None else {**out, "entropy": entropy}

    def _rollout(self, batch: PromptDemoBatch):
        hp = self.hparams
        rng = random.Random(hash((hp.seed, self.global_step, self.global_rank)))
        num_hybrid = hp.num_hybrid if all(item.demo_ids for item in batch.items) else 0
        ratios = [rng.uniform(self.prefix_low, self.prefix_high) for _ in range(len(batch) * num_hybrid)]
        requests, owners = build_group_requests(batch.items, hp.group_size, num_hybrid, ratios,
                                                hp.max_response_tokens, hp.min_prefix_tokens, rng)
        from prefix_rft_pl.context import check_requests, model_context  # before any generation

        check_requests(requests, [batch.items[o].uid for o in owners],
                       model_context(self.policy.config, (hp.engine_options or {}).get("max_model_len")))
        sampling = SamplingConfig(temperature=hp.temperature, top_p=hp.top_p)
        live = [r for r in requests if r.max_new_tokens > 0]  # full-demonstration rows generate nothing
        rollouts = iter(self.engine.generate(live, sampling) if live else [])  # same order as `live`
        if hasattr(self.engine, "sleep"):
            self.engine.sleep()  # frees GPU memory for the update when the engine has sleep mode; else a no-op
        flat = [next(rollouts) if r.max_new_tokens > 0 else Rollout([], [], "stop")
                for r in requests for _ in range(r.num_samples)]
        return assemble_trajectories(batch.items, requests, owners, flat)

    def _score(self, batch: PromptDemoBatch, trajectories, hints: list | None = None) -> tuple[Tensor, dict[str, int]]:
        """Rewards [B, G]. With UFT's `hints` (ids per prompt), the graded text is hint + response:
        UFT grades the assistant turn, which its hint begins."""
        texts = [self.tokenizer.decode((hints[t.prompt_index] if hints else []) + t.response_ids,
                                       skip_special_tokens=True) for t in trajectories]
        answers = [batch.items[t.prompt_index].answers for t in trajectories]
        result = self.reward_fn(texts, answers)
        rewards = torch.tensor(result.rewards, dtype=torch.float32).view(len(batch), self.hparams.group_size)
        stats = {"reward/timeouts": result.num_timeouts, "reward/errors": result.num_errors,
                 "reward/no_answer": result.num_no_answer}
        return rewards, stats

    def _check_engine_weights(self) -> None:
        """Stop when the engine sampled from other weights than pi_old (a collective); before the update."""
        from prefix_rft_pl.engines.checks import check_engine_weights

        fingerprint = getattr(self.engine, "pop_weights_fingerprint", None)  # engines with their own weights (vLLM)
        if fingerprint is not None:
            with self._timed("weight_check"):  # the trainer's side; the engine's is inside time/rollout_s
                verified = check_engine_weights(self.policy, fingerprint(), self.engine.dtype, self.global_step)
            self.log("rollout/weights_verified", float(verified))  # tensors compared exactly

    def _is_weights(self, old_logprobs: Tensor, tb: TrajectoryBatch) -> Tensor | None:
        if self.hparams.tis_cap is None:
            return None
        from prefix_rft_pl.engines.checks import truncated_is_weights

        return truncated_is_weights(old_logprobs, tb.engine_logprobs, tb.generated_mask, self.hparams.tis_cap)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["relift"] = {"buffer": self.relift_buffer, "sft_steps": self.relift_sft_steps}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("relift", {})
        self.relift_buffer, self.relift_sft_steps = list(state.get("buffer", [])), state.get("sft_steps", 0)

    # ---------------------------------------------------------------- logging
    @contextmanager
    def _timed(self, phase: str):
        start = time.perf_counter()
        yield
        self.timings[phase] = time.perf_counter() - start
        self.log(f"time/{phase}_s", self.timings[phase])

    def _log_step(self, rewards, is_hybrid, tb, loss, grad_norm, reward_stats, old_logprobs) -> None:
        from datamodules.prompt_demo import skip_metrics
        from prefix_rft_pl.engines.checks import logprob_metrics
        from prefix_rft_pl.step_metrics import rollout_metrics

        if old_logprobs is not None:  # the trainer/engine gap on every generated token (a collective)
            self.log_dict(logprob_metrics(old_logprobs, tb.engine_logprobs, tb.generated_mask))
        self.log_dict({"train/loss": loss, "train/grad_norm": grad_norm, **rollout_metrics(rewards, is_hybrid, tb),
                       **{k: float(v) for k, v in reward_stats.items()}, **skip_metrics(self.trainer)})
        self.log("reward", rewards.mean(), prog_bar=True)

    # ---------------------------------------------------------------- validation & export
    def validation_step(self, batch: PromptDemoBatch, batch_idx: int) -> None:
        from prefix_rft_pl.engines.hf import HFEngine
        from prefix_rft_pl.types import GenerationRequest

        engine = HFEngine(self.policy, self.tokenizer)  # the trainer's current weights, always
        requests = [GenerationRequest(item.prompt_ids, self.hparams.max_response_tokens) for item in batch.items]
        from prefix_rft_pl.context import check_requests, model_context  # before any generation

        check_requests(requests, [item.uid for item in batch.items], model_context(self.policy.config), "validation")
        rollouts = engine.generate(requests, SamplingConfig(temperature=self.hparams.val_temperature))
        texts = [self.tokenizer.decode(r.token_ids, skip_special_tokens=True) for r in rollouts]
        result = self.reward_fn(texts, [item.answers for item in batch.items])
        self.log("val/accuracy", sum(result.rewards) / len(batch), batch_size=len(batch), prog_bar=True, sync_dist=True)

    def on_train_end(self) -> None:
        from prefix_rft_pl.export import export_hf

        export_hf(self)

    def teardown(self, stage: str) -> None:
        if self.reward_fn is not None and hasattr(self.reward_fn, "close"):
            self.reward_fn.close()
        if stage == "fit" and hasattr(self.engine, "close"):
            self.engine.close()  # before the strategy destroys the process group vLLM's groups live in
            self.engine = None
