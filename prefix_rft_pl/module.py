"""PrefixRFTModule: the policy and the Prefix-RFT update (SPEC section 2), wiring only.

One training batch = B prompts. The module samples G trajectories per prompt (G - G_hyb
ordinary, G_hyb continuing from a demonstration prefix), scores them, computes Dr. GRPO
advantages and old log-probs, masks low-entropy prefix tokens, then runs
`ppo_epochs x mini_batches` optimiser steps (manual optimisation). The settings come in
groups (config.py), the passes over the policy are the update pipeline (update/), the loss
math is in losses.py and its variants in variants.py. The baselines of SPEC section 3 are
settings of this same module (configs/rows/).
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from torch import Tensor

from prefix_rft_pl import losses
from prefix_rft_pl.config import (
    Engine,
    Hints,
    Loss,
    Optim,
    Precision,
    Prefix,
    ReLIFT,
    Reward,
    Rollout,
    Settings,
    Update,
    plain,
)
from prefix_rft_pl.engines.base import RolloutEngine, SamplingConfig
from prefix_rft_pl.prefix import TrajectoryBatch, assemble_trajectories, build_group_requests, pad_trajectories
from prefix_rft_pl.step_metrics import scored_rollouts
from prefix_rft_pl.types import PromptDemoBatch, PromptItem, ReportsSkips
from prefix_rft_pl.types import Rollout as Sample
from prefix_rft_pl.update import rows as row_rules
from prefix_rft_pl.update.forward import Passes, forward_logprobs
from prefix_rft_pl.update.ranks import LightningRanks, OneRank, Ranks
from prefix_rft_pl.update.steps import StepTerms, optimise


class PrefixRFTModule(L.LightningModule):
    def __init__(
        self,
        policy: str,
        rollout: Rollout = Rollout(),
        prefix: Prefix = Prefix(),
        loss: Loss = Loss(),
        update: Update = Update(),
        optim: Optim = Optim(),
        precision: Precision = Precision(),
        engine: Engine = Engine(),
        reward: Reward = Reward(),
        relift: ReLIFT | None = None,
        hints: Hints | None = None,
        seed: int | None = None,
    ):
        """
        Args:
            policy: HF hub id or local directory of the policy (and its tokenizer).
            rollout: sampling of the G trajectories per prompt.
            prefix: the demonstration prefix's tokens in the loss (selection by entropy, rule).
            loss: advantage, clip, aggregation and the baselines' extra terms.
            update: optimiser steps per rollout batch, micro-batching, memory.
            optim: the optimiser.
            precision: master weights, FSDP2 compute and reduce dtypes.
            engine: the rollout engine (shared with the eval harness).
            reward: the reward's components (math-verify accuracy by default) and their workers and time bound.
            relift: ReLIFT's buffer and SFT step; null disables.
            hints: UFT's hints in the prompts; null disables.
            seed: seed of prefix lengths, demonstration picks, random prefix selection, hints and vLLM's
                samples; null: seed_everything's (the CLI resolves it and writes it into run_manifest.json).
        """
        super().__init__()
        self.settings = Settings(rollout, prefix, loss, update, optim, precision, engine, reward, relift, hints)
        # plain data only (variants as {class_path, init_args}): checkpoints load with weights_only
        seed = 0 if seed is None else seed  # the CLI passes seed_everything's; in Python, 0 unless given
        self.save_hyperparameters({"policy": policy, "seed": seed, **plain(self.settings)})
        self.automatic_optimization = False
        self.prefix_low, self.prefix_high = 0.95, 0.95  # set every step by callbacks.PrefixSchedule
        self.policy = None
        self.tokenizer = None
        self.engine: RolloutEngine | None = None
        self.reward_fn = None
        self.timings: dict[str, float] = {}
        self.flop_constants: tuple[float, int, int, int] | None = None  # peak FLOP/s, N, L, H*Q: on_fit_start
        self.relift_buffer: list = []  # ReLIFT: prompts whose rollouts all failed (all ranks'), waiting for SFT
        self.relift_sft_steps = 0
        self.reference = None  # UFT's frozen reference policy (loss.kl_coef > 0)
        self._pending_random_states = None  # a checkpoint's, until the first resumed batch
        self.interrupted = False  # stopped by a signal (RunControl): no export, the run is not finished

    # ---------------------------------------------------------------- setup
    def configure_model(self) -> None:
        if self.policy is not None:
            return
        from transformers import AutoTokenizer

        precision, mesh = self.settings.precision, getattr(self, "device_mesh", None)
        if precision.compute is not None and mesh is None:
            raise ValueError(f"model.precision.compute: {precision.compute} applies through FSDP2 (trainer.strategy "
                             "ModelParallelStrategy); on one device set trainer.precision: bf16-mixed instead")
        self.tokenizer = AutoTokenizer.from_pretrained(self.hparams.policy)
        self.policy = self._load_policy().train()  # from_pretrained returns eval mode
        if self.settings.update.gradient_checkpointing:
            self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.settings.loss.kl_coef > 0:  # UFT's KL reference: the initial policy, frozen
            self.reference = self._load_policy().eval().requires_grad_(False)

    def _load_policy(self) -> torch.nn.Module:
        """The policy's weights from `policy`, in the master dtype, sharded under FSDP2."""
        from transformers import AutoModelForCausalLM

        precision = self.settings.precision
        model = AutoModelForCausalLM.from_pretrained(self.hparams.policy, dtype=getattr(torch, precision.master))
        if getattr(self, "device_mesh", None) is not None:
            from prefix_rft_pl.distributed import shard_policy

            shard_policy(model, self.device_mesh, precision.compute, precision.reduce)
        return model

    def setup(self, stage: str) -> None:
        from prefix_rft_pl.reward_components import WeightedReward

        self.configure_model()
        reward = self.settings.reward
        self.reward_fn = WeightedReward(reward.component_objects, reward.workers, reward.timeout_s)

    def on_fit_start(self) -> None:
        from prefix_rft_pl.engines.build import build_engine

        if self.engine is None:  # one engine per rank, built by all ranks here (vLLM: a collective)
            per_rank = self.trainer.world_size > 1
            self.engine = build_engine(self.settings.engine, self.hparams.policy, self.tokenizer, self.policy,
                                       rank=self.global_rank if per_rank else None,
                                       local_rank=self.local_rank if per_rank else None)
        from prefix_rft_pl.perf import attention_width, matmul_params, peak_flops

        peak, _ = peak_flops(self.device, self.settings.update.peak_tflops)  # draws no random numbers
        self.flop_constants = (peak, matmul_params(self.policy), *attention_width(self.policy.config))

    def configure_callbacks(self):
        """The callbacks the method needs, so that no config overlay can drop them: RunControl always,
        the weight sync with the vLLM engine; a missing prefix schedule is refused (it has settings)."""
        from prefix_rft_pl.prefix_schedule import PrefixSchedule
        from prefix_rft_pl.run_control import RunControl
        from prefix_rft_pl.weight_sync import VLLMWeightSync

        present = self.trainer.callbacks
        needed = [RunControl()]
        if self.settings.engine.kind == "vllm" and not any(isinstance(c, VLLMWeightSync) for c in present):
            needed.append(VLLMWeightSync())
        if (self.trainer.state.fn == "fit" and self.settings.rollout.num_hybrid > 0
                and not any(isinstance(c, PrefixSchedule) for c in present)):
            raise ValueError(
                "model.rollout.num_hybrid > 0 but trainer.callbacks has no callbacks.PrefixSchedule (a config that "
                "sets trainer.callbacks replaces the list of the configs before it). Add to a list with "
                "--trainer.callbacks+=callbacks.PrefixSchedule (paper: cosine 0.95 -> 0.05 over the run), or "
                "list it in the overlay")
        return needed

    def configure_optimizers(self):
        """The RL optimiser with its learning-rate schedule (stepped once per optimiser step, in the
        checkpoint), and ReLIFT's SFT optimiser at a constant rate."""
        from prefix_rft_pl.optim import build_optimizer, build_scheduler, check_master_weights

        s = self.settings
        check_master_weights(self.policy.named_parameters(), s.precision.allow_half_precision_weights)
        optimizer = build_optimizer(s.optim.name, self.policy.parameters(), s.optim.lr, s.optim.weight_decay)
        total = self.trainer.max_steps if self._trainer is not None else -1
        scheduler = {"scheduler": build_scheduler(optimizer, s.optim.warmup_steps, s.optim.decay, s.optim.min_lr_ratio,
                                                  total), "interval": "step"}
        if s.relift is None:
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        sft_lr = s.optim.lr if s.relift.sft_lr is None else s.relift.sft_lr
        sft = build_optimizer(s.optim.name, self.policy.parameters(), sft_lr, s.optim.weight_decay)
        return [optimizer, sft], [scheduler]

    def _optimizer(self, index: int = 0):
        """Lightning's wrapper of optimiser `index` (0: the RL one; 1: ReLIFT's SFT one)."""
        optimizers = self.optimizers()
        return optimizers[index] if isinstance(optimizers, list) else optimizers

    def ranks(self) -> Ranks:
        if self._trainer is None or self.trainer.world_size == 1:
            return OneRank()
        return LightningRanks(self)

    def passes(self) -> Passes:
        return Passes(self.policy, self.tokenizer.pad_token_id, self.settings, self.ranks(), self.manual_backward)

    # ---------------------------------------------------------------- training
    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # token-id lists: tensors are built, on the right device, after the rollout

    def training_step(self, batch: PromptDemoBatch, batch_idx: int) -> dict[str, Tensor]:
        s, passes = self.settings, self.passes()
        batch, sft_items, hints = self._hinted(batch)                          # UFT: hints in the prompts
        with self._timed("rollout"):
            trajectories = self._rollout(batch)                                # SPEC 2.1-2.2
        with self._timed("reward"):
            rewards, scored, texts = self._score(batch, trajectories, hints)  # [B, G], SPEC 2.3
        tb = pad_trajectories(trajectories, self.tokenizer.pad_token_id)
        is_hybrid = tb.prefix_mask.any(-1).view(len(batch), s.rollout.group_size)             # [B, G]
        baseline = ~is_hybrid if s.loss.advantage_baseline == "ordinary" else None
        advantages = losses.group_advantages(rewards, baseline, s.loss.advantage_std).view(-1)  # [N], SPEC 2.4
        utb, sft_items, terms = self._step_terms(sft_items, rewards, tb)  # CHORD, SRFT, HPT (its RL batch)
        old_logprobs, entropy, kept, pass_rows = self._old_logprobs_and_selection(passes, utb, advantages)  # 2.5-2.6
        token_advantages = advantages[:, None] * (utb.generated_mask | kept)                  # [N, T]
        is_weights = self._is_weights(old_logprobs, utb)
        ref_logprobs = forward_logprobs(passes, utb, False, False, self.reference)[0] if s.loss.kl_coef > 0 else None
        update_rows = self._update_rows(token_advantages, utb)
        self.log("train/update_rows", update_rows.float().mean())  # the rest add nothing to the gradient
        self.log("train/lr", self._optimizer(0).param_groups[0]["lr"])  # of this batch's first optimiser step
        reuse = pass_rows is not None
        with self._timed("update"):                                                            # SPEC 2.7
            loss, grad_norm, current = optimise(passes, self._optimizer(0), utb, None if reuse else old_logprobs,
                                                token_advantages, is_weights, sft_items, ref_logprobs, update_rows,
                                                self.lr_schedulers(), terms)
            self._relift(passes, batch, rewards)
        self._log_perf(tb, update_rows)
        if reuse:  # the update's own log-probs and entropies on the rows the separate pass left out
            old_logprobs, entropy = (torch.where(pass_rows[:, None], a, b)
                                     for a, b in zip((old_logprobs, entropy), current))
        self._log_step(rewards, is_hybrid, tb, loss, grad_norm, scored.metrics(),
                       old_logprobs if entropy is not None else None)
        out = {"loss": loss, "mask": tb.mask, "prefix_mask": tb.prefix_mask, "kept": kept,
               "advantages": advantages.view(len(batch), s.rollout.group_size),
               "rollouts": scored_rollouts(batch, trajectories, texts, scored, advantages)}
        return out if entropy is None else {**out, "entropy": entropy}

    def _hinted(self, batch: PromptDemoBatch):
        """UFT: the batch with hints in its prompts, the hints as CE targets and as ids to grade;
        without hints: the batch, its items as the targets of the demonstration CE, no hints."""
        hints = self.settings.hints
        if hints is None:
            return batch, batch.items, None
        from prefix_rft_pl.baselines.uft import uft_hint_batch

        update = self.settings.update
        iteration = self.global_step // (update.ppo_epochs * update.mini_batches) + 1  # verl's global_steps, from 1
        rng = random.Random(hash((self.hparams.seed, iteration, self.global_rank, 1)))
        batch, targets, metrics = uft_hint_batch(batch, hints, iteration, rng, self.tokenizer.eos_token_id)
        self.log_dict(metrics)
        return batch, targets, [item.demo_ids[0] if item.demo_ids else [] for item in targets]

    def _step_terms(self, sft_items, rewards: Tensor, tb: TrajectoryBatch):
        """The batch the RL update sees, the CE targets and the step's terms: loss.hybrid's
        (CHORD, SRFT, HPT: prefix_rft_pl/baselines/hybrids.py), else loss.demo_sft_coef alone."""
        s = self.settings
        if s.loss.hybrid is None:
            return tb, sft_items, StepTerms(sft_coef=s.loss.demo_sft_coef)
        iteration = self.global_step // (s.update.ppo_epochs * s.update.mini_batches)  # rollout batches done
        tb, sft_items, terms, metrics = s.loss.hybrid.step_terms(s, iteration, sft_items, rewards, tb)
        self.log_dict(metrics)
        return tb, sft_items, terms

    def _old_logprobs_and_selection(self, passes: Passes, tb: TrajectoryBatch, advantages: Tensor):
        """pi_old's log-probs and entropies (SPEC 2.5) and the kept prefix tokens (2.6). Returns
        (old_logprobs, entropy, kept, pass_rows): `pass_rows` [N] are the rows the separate pass
        covered when the update's own log-probs serve as the old ones, else None."""
        s = self.settings
        regularised = self._dense_loss()
        reuse = row_rules.reuses_old_logprobs(s.update.ppo_epochs, s.update.mini_batches, s.loss.tis_cap)
        # decided over all ranks: the forward passes and the engine check below are collectives
        generated_anywhere = int(passes.ranks.gather_counts(int(tb.generated_mask.any())).max()) > 0
        if not (s.prefix.rule.uses_advantage or generated_anywhere):
            return torch.zeros(tb.mask.shape), None, tb.prefix_mask, None  # pure SFT: no ratio, no selection
        candidates = self._candidate_rows(advantages[:, None] * tb.mask, tb, regularised)
        pass_rows = row_rules.separate_pass_rows(reuse, candidates, tb.prefix_mask)          # [N]
        with self._timed("logprob"):
            old_logprobs, entropy = forward_logprobs(passes, tb, with_entropy=True, grad=False, rows=pass_rows)
        self._check_engine_weights()
        generator = torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + self.global_step)
        kept = row_rules.select_prefix(entropy, tb.prefix_mask, s.prefix.token_keep, s.prefix.selection,
                                       s.rollout.max_response_tokens, generator, passes.ranks)  # [N, T]
        return old_logprobs, entropy, kept, pass_rows if reuse else None

    def _dense_loss(self) -> bool:
        """A term weighs every response token whatever its advantage: entropy bonus, KL, SRFT's weights."""
        loss = self.settings.loss
        return loss.entropy_coef > 0 or loss.kl_coef > 0 or (loss.hybrid is not None and loss.hybrid.dense)

    def _candidate_rows(self, token_advantages: Tensor, tb: TrajectoryBatch, regularised: bool) -> Tensor:
        if not self.settings.update.skip_rows_without_gradient:
            return torch.ones(token_advantages.shape[0], dtype=torch.bool)
        rows = row_rules.rows_with_gradient(token_advantages, tb.prefix_mask, self.settings.prefix.rule.uses_advantage,
                                            regularised)
        hybrid = self.settings.loss.hybrid
        return rows & tb.mask.any(-1) if hybrid is not None and hybrid.empties_rows else rows  # HPT's switched rows

    def _update_rows(self, token_advantages: Tensor, tb: TrajectoryBatch) -> Tensor:
        return self._candidate_rows(token_advantages, tb, self._dense_loss())

    def _relift(self, passes: Passes, batch: PromptDemoBatch, rewards: Tensor) -> None:
        if self.settings.relift is None:
            return
        from prefix_rft_pl.baselines.relift import relift_step

        self.relift_buffer, stepped = relift_step(passes, self._optimizer(1).optimizer, self.settings.relift,
                                                  self.relift_buffer, batch, rewards)
        self.relift_sft_steps += int(stepped)
        self.log_dict({"train/relift_buffer": float(len(self.relift_buffer)),
                       "train/relift_sft_steps": float(self.relift_sft_steps)})

    def _rollout(self, batch: PromptDemoBatch):
        r = self.settings.rollout
        rng = random.Random(hash((self.hparams.seed, self.global_step, self.global_rank)))
        num_hybrid = r.num_hybrid if all(item.demo_ids for item in batch.items) else 0
        ratios = [rng.uniform(self.prefix_low, self.prefix_high) for _ in range(len(batch) * num_hybrid)]
        requests, owners = build_group_requests(batch.items, r.group_size, num_hybrid, ratios,
                                                r.max_response_tokens, r.min_prefix_tokens, rng)
        from prefix_rft_pl.context import check_requests, model_context  # before any generation

        check_requests(requests, [batch.items[o].uid for o in owners],
                       model_context(self.policy.config, self.settings.engine.max_model_len))
        from prefix_rft_pl.run_state import sampling_seed

        seed = sampling_seed(self.hparams.seed, self.global_step, self.global_rank)  # vLLM: per-request seeds
        sampling = SamplingConfig(temperature=r.temperature, top_p=r.top_p, seed=seed)
        live = [q for q in requests if q.max_new_tokens > 0]  # full-demonstration rows generate nothing
        rollouts = iter(self.engine.generate(live, sampling) if live else [])  # same order as `live`
        self.engine.sleep()  # frees accelerator memory for the update (a no-op without sleep mode)
        flat = [next(rollouts) if q.max_new_tokens > 0 else Sample([], [], "stop")
                for q in requests for _ in range(q.num_samples)]
        return assemble_trajectories(batch.items, requests, owners, flat)

    def _score(self, batch: PromptDemoBatch, trajectories, hints: list | None = None):
        """Rewards [B, G] (the components' weighted sum), each component's scores, and the graded
        texts. With UFT's `hints` (ids per prompt), the graded text is hint + response: UFT grades
        the assistant turn, which its hint begins."""
        texts = [self.tokenizer.decode((hints[t.prompt_index] if hints else []) + t.response_ids,
                                       skip_special_tokens=True) for t in trajectories]
        items = [batch.items[t.prompt_index] for t in trajectories]
        scored = self.reward_fn(texts, [item.answers for item in items], [item.extra for item in items])
        rewards = torch.tensor(scored.total, dtype=torch.float32).view(len(batch), self.settings.rollout.group_size)
        return rewards, scored, texts

    def _check_engine_weights(self) -> None:
        """Stop when the engine sampled from other weights than pi_old (a collective); before the update."""
        if not self.engine.holds_weights:
            return
        from prefix_rft_pl.engines.checks import check_engine_weights

        with self._timed("weight_check"):  # the trainer's side; the engine's is inside time/rollout_s
            verified = check_engine_weights(self.policy, self.engine.pop_weights_fingerprint(), self.engine.dtype,
                                            self.global_step)
        self.log("rollout/weights_verified", float(verified))  # tensors compared exactly

    def _is_weights(self, old_logprobs: Tensor, tb: TrajectoryBatch) -> Tensor | None:
        if self.settings.loss.tis_cap is None:
            return None
        from prefix_rft_pl.engines.checks import truncated_is_weights

        return truncated_is_weights(old_logprobs, tb.engine_logprobs, tb.generated_mask, self.settings.loss.tis_cap)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from prefix_rft_pl.run_state import capture_random_states

        # plain dicts, not PromptItem objects: the checkpoint loads with torch's weights_only
        checkpoint["relift"] = {"buffer": [asdict(item) for item in self.relift_buffer],
                                "sft_steps": self.relift_sft_steps}
        # every rank's, gathered: a sharded checkpoint keeps rank 0's copy of what is not a tensor
        checkpoint["random_states"] = self.ranks().gather_objects([capture_random_states()])

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("relift", {})
        self.relift_buffer = [item if isinstance(item, PromptItem) else PromptItem(**item)
                              for item in state.get("buffer", [])]
        self.relift_sft_steps = state.get("sft_steps", 0)
        self._pending_random_states = checkpoint.get("random_states")  # set when the first resumed batch starts

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """A resumed run takes the random states its checkpoint saved, right before its first batch (what
        happens in between, engine start-up included, draws nothing the uninterrupted run drew)."""
        states, self._pending_random_states = self._pending_random_states, None
        if states is not None:
            from prefix_rft_pl.run_state import restore_random_states

            if len(states) != self.trainer.world_size:
                raise ValueError(f"the checkpoint holds the random states of {len(states)} ranks, this run has "
                                 f"{self.trainer.world_size}: resume on the same number of ranks")
            restore_random_states(states[self.global_rank])

    # ---------------------------------------------------------------- logging
    @contextmanager
    def _timed(self, phase: str):
        start = time.perf_counter()
        yield
        self.timings[phase] = time.perf_counter() - start
        self.log(f"time/{phase}_s", self.timings[phase])

    def _log_perf(self, tb: TrajectoryBatch, update_rows: Tensor) -> None:
        """perf/...: this rank's rollout and update throughput and the update's MFU (prefix_rft_pl/perf.py):
        the FLOPs of ppo_epochs forward + backward passes over the updated rows, at their actual lengths."""
        from prefix_rft_pl.perf import step_perf, train_flops

        peak, *shape = self.flop_constants
        lens = tb.attention_mask[update_rows].sum(-1).tolist() * self.settings.update.ppo_epochs  # rows per pass
        self.log_dict(step_perf(int(tb.generated_mask.sum()), self.timings["rollout"], sum(lens),
                                self.timings["update"], train_flops(*shape, lens), peak))

    def _log_step(self, rewards, is_hybrid, tb, loss, grad_norm, reward_stats, old_logprobs) -> None:
        from prefix_rft_pl.engines.checks import logprob_metrics
        from prefix_rft_pl.step_metrics import rollout_metrics

        if old_logprobs is not None:  # the trainer/engine gap on every generated token (a collective)
            self.log_dict(logprob_metrics(old_logprobs, tb.engine_logprobs, tb.generated_mask))
        data = self.trainer.datamodule
        skips = {k: float(v) for k, v in data.skip_counts().items()} if isinstance(data, ReportsSkips) else {}
        self.log_dict({"train/loss": loss, "train/grad_norm": grad_norm, **rollout_metrics(rewards, is_hybrid, tb),
                       **{k: float(v) for k, v in reward_stats.items()}, **skips})
        self.log("reward", rewards.mean(), prog_bar=True)

    # ---------------------------------------------------------------- validation & export
    def validation_step(self, batch: PromptDemoBatch, batch_idx: int) -> None:
        from prefix_rft_pl.context import check_requests, model_context
        from prefix_rft_pl.engines.hf import HFEngine
        from prefix_rft_pl.types import GenerationRequest

        r = self.settings.rollout
        engine = HFEngine(self.policy, self.tokenizer)  # the trainer's current weights, always
        requests = [GenerationRequest(item.prompt_ids, r.max_response_tokens) for item in batch.items]
        check_requests(requests, [item.uid for item in batch.items], model_context(self.policy.config), "validation")
        rollouts = engine.generate(requests, SamplingConfig(temperature=r.val_temperature))
        texts = [self.tokenizer.decode(x.token_ids, skip_special_tokens=True) for x in rollouts]
        result = self.reward_fn.grader(texts, [item.answers for item in batch.items])  # accuracy, whatever the reward
        self.log("val/accuracy", sum(result.rewards) / len(batch), batch_size=len(batch), prog_bar=True, sync_dist=True)

    def on_train_end(self) -> None:
        if self.interrupted:
            return  # not finished: the export marks a finished run
        from prefix_rft_pl.export import export_hf

        export_hf(self)

    def teardown(self, stage: str) -> None:
        if self.reward_fn is not None:
            self.reward_fn.close()
        if stage == "fit" and self.engine is not None and self.engine.holds_weights:
            self.engine.close()  # before the strategy destroys the process group vLLM's groups live in
            self.engine = None  # a later fit builds a new one; an engine on the live policy stays

