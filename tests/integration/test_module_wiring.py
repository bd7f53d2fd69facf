"""The module's wiring with a scripted engine (canned rollouts): which tokens carry which
advantage, and a gradient independent of the micro-batch size. End-to-end tests with
real engines are in tests/integration."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from callbacks import EntropyStats, PrefixSchedule
from prefix_rft_pl.types import PromptDemoBatch
from tests.helpers import GradRecorder, ScriptedEngine, build_module, items_from

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


BASE = {"rollout": {"group_size": 4, "max_response_tokens": 48}, "reward": {"workers": 1}}


def run_step(tiny_model_dir, toy_task_files, settings):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    items = items_from(tokenizer, toy_task_files["train"], 4)
    module = build_module(str(tiny_model_dir), BASE, settings)
    module.engine = ScriptedEngine(tokenizer, items)
    recorder = GradRecorder()
    outputs = {}

    class Capture(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, out, batch, batch_idx):
            outputs.update(out)

    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[PrefixSchedule(kind="constant", low_start=0.5, high=0.5), recorder, Capture(),
                                   EntropyStats()])
    torch.manual_seed(0)
    trainer.fit(module, DataLoader(items, batch_size=4, collate_fn=PromptDemoBatch))
    return recorder.grads[0], outputs, trainer.callback_metrics


def test_gradient_is_independent_of_micro_batch_size(tiny_model_dir, toy_task_files):
    g1, _, _ = run_step(tiny_model_dir, toy_task_files, {"update": {"micro_batch_size": 16}})
    g4, _, _ = run_step(tiny_model_dir, toy_task_files, {"update": {"micro_batch_size": 4}})
    assert any(g.abs().sum() > 0 for g in g1.values())
    for name in g1:
        torch.testing.assert_close(g4[name], g1[name], rtol=1e-4, atol=1e-8)


def test_rewards_and_prefix_masks_reach_the_loss(tiny_model_dir, toy_task_files):
    _, out, metrics = run_step(tiny_model_dir, toy_task_files,
                               {"update": {"micro_batch_size": 16}, "prefix": {"token_keep": 0.2}})
    # per prompt: ordinary [1, 0, 0] + hybrid 1 -> rewards 0.5 mean; hybrids all correct
    assert metrics["reward/hybrid"].item() == 1.0
    assert metrics["reward/ordinary"].item() == pytest.approx(1 / 3)
    prefix, kept = out["prefix_mask"], out["kept"]
    assert prefix[3::4].all(-1).logical_not().all() and prefix[3::4].any(-1).all()  # every 4th is hybrid
    assert not prefix[0::4].any() and not (kept & ~prefix).any()
    assert int(kept.sum()) == round(0.2 * int(prefix.sum()))
    assert metrics["entropy/kept_fraction"].item() == pytest.approx(int(kept.sum()) / int(prefix.sum()))


def test_freeze_prefix_gives_prefix_tokens_no_gradient_signal(tiny_model_dir, toy_task_files):
    _, out, _ = run_step(tiny_model_dir, toy_task_files,
                         {"update": {"micro_batch_size": 16}, "prefix": {"selection": "freeze"}})
    assert not out["kept"].any()


def test_schedule_counts_rollout_batches_not_optimiser_steps(tiny_model_dir, toy_task_files):
    # 2 mini-batches x 2 PPO epochs = 4 optimiser steps per rollout batch; the cosine over 4
    # iterations must still be at its second value after one batch, not at its end
    from transformers import AutoTokenizer

    from prefix_rft_pl.schedule import SCHEDULES

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    items = items_from(tokenizer, toy_task_files["train"], 4)
    module = build_module(str(tiny_model_dir), BASE, {"update": {"mini_batches": 2, "ppo_epochs": 2}})
    module.engine = ScriptedEngine(tokenizer, items)
    schedule = PrefixSchedule(kind="cosine", steps=4)
    lows = []

    class Lows(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lows.append(pl_module.prefix_low)

    trainer = L.Trainer(max_steps=8, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[schedule, Lows()])
    trainer.fit(module, DataLoader(items, batch_size=2, collate_fn=PromptDemoBatch))
    assert trainer.global_step == 8 and schedule.step == 2
    assert lows == pytest.approx([SCHEDULES["cosine"](i, 0.95, 0.05, 4, 0) for i in range(2)])
