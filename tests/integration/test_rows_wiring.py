"""The baseline rows' machinery inside the module, with a scripted engine: ReLIFT's SFT step
on its own optimiser (not a training step), UFT's hints in every rollout's prompt and in the
graded text, its frozen KL reference, and the entropy bonus's gradient; CHORD's mu over rollout
batches and across a resume, SRFT's update, HPT's switch of unsolved prompts to SFT."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from callbacks import PrefixSchedule
from prefix_rft_pl.baselines.uft import hint_units
from prefix_rft_pl.types import PromptDemoBatch
from tests.helpers import RecordingEngine, build_module, items_from

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


def fit(tiny_model_dir, toy_task_files, settings, engine_finish=False, max_steps=2, ckpt_path=None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    items = items_from(tokenizer, toy_task_files["train"], 4)
    module = build_module(str(tiny_model_dir),
                          {"rollout": {"group_size": 4, "num_hybrid": 0, "max_response_tokens": 48},
                           "reward": {"workers": 1}}, settings)
    module.engine = RecordingEngine(tokenizer, items, engine_finish)
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[PrefixSchedule(kind="constant", low_start=0.5, high=0.5)])
    torch.manual_seed(0)
    trainer.fit(module, DataLoader(items, batch_size=4, collate_fn=PromptDemoBatch), ckpt_path=ckpt_path)
    return module, trainer, items, tokenizer


def test_relift_sft_step_uses_its_own_optimiser_and_is_not_a_training_step(tiny_model_dir, toy_task_files):
    # every rollout fails: the 4 prompts fill the buffer (a global batch of 4) at once -> one SFT step
    module, trainer, _, _ = fit(tiny_model_dir, toy_task_files, {"relift": {}, "update": {"mini_batches": 2}},
                                 max_steps=2)
    rl, sft = (opt.optimizer for opt in module.optimizers())
    assert module.relift_sft_steps == 1 and module.relift_buffer == []
    assert trainer.global_step == 2                                         # 2 RL mini-batch steps only
    param = next(module.policy.parameters())
    assert int(rl.state[param]["step"]) == 2 and int(sft.state[param]["step"]) == 1


def test_uft_hint_is_in_every_rollouts_prompt_and_in_the_graded_text(tiny_model_dir, toy_task_files):
    # p(1) = 0.95 with T_hint = 300: most prompts get a hint; the engine finishes each demonstration
    module, trainer, items, tokenizer = fit(
        tiny_model_dir, toy_task_files,
        {"hints": {"steps": 300}, "loss": {"demo_sft_coef": 0.001, "kl_coef": 0.001, "entropy_coef": 0.001}},
        engine_finish=True, max_steps=1)
    assert len(module.engine.requests) == 4 and all(r.num_samples == 4 and not r.prefix_ids
                                                    for r in module.engine.requests)
    hinted = 0
    for item, request in zip(items, module.engine.requests):
        hint = request.prompt_ids[len(item.prompt_ids):]
        assert request.prompt_ids[:len(item.prompt_ids)] == item.prompt_ids
        assert hint == hint_units(item.demo_ids[0], tokenizer.eos_token_id)[:len(hint)]
        hinted += bool(hint)
    assert hinted > 0
    # hint + the demonstration's rest = the whole correct demonstration: every reward is 1
    assert trainer.callback_metrics["reward"].item() == 1.0
    assert module.reference is not None and not any(p.requires_grad for p in module.reference.parameters())
    assert module.reference is not module.policy


def test_chord_mu_follows_the_rollout_batches_and_continues_after_a_resume(tiny_model_dir, toy_task_files, tmp_path):
    chord = {"loss": {"hybrid": {"class_path": "prefix_rft_pl.baselines.hybrids.Chord",
                                 "init_args": {"mu_warmup_steps": 2, "mu_decay_steps": 2, "mu_valley": 0.1}}}}
    _, trainer, _, _ = fit(tiny_model_dir, toy_task_files, chord, max_steps=2)
    assert trainer.callback_metrics["train/chord_mu"].item() == pytest.approx(0.25)  # batch 1: 1/2 of the warm-up
    trainer.save_checkpoint(tmp_path / "step2.ckpt")
    _, resumed, _, _ = fit(tiny_model_dir, toy_task_files, chord, max_steps=3, ckpt_path=tmp_path / "step2.ckpt")
    assert resumed.global_step == 3
    assert resumed.callback_metrics["train/chord_mu"].item() == pytest.approx(0.5)  # batch 2: the peak, not 0


def test_srft_trains_with_its_rollout_and_demonstration_terms(tiny_model_dir, toy_task_files):
    srft = {"rollout": {"num_hybrid": 1},
            "loss": {"hybrid": {"class_path": "prefix_rft_pl.baselines.hybrids.SRFT"}, "demo_sft_coef": 0.5,
                     "entropy_coef": 0.001},
            "prefix": {"rule": {"class_path": "prefix_rft_pl.variants.ShapedPrefix"}, "selection": "none"}}
    module, trainer, _, _ = fit(tiny_model_dir, toy_task_files, srft, max_steps=1)
    assert trainer.global_step == 1 and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert trainer.callback_metrics["train/grad_norm"].item() > 0  # every rollout is wrong: weight -1, not 0
    assert all(torch.isfinite(p).all() for p in module.policy.parameters())


@pytest.mark.parametrize("finish, switched", [(False, 1.0), (True, 0.0)])
def test_hpt_switches_unsolved_prompts_to_sft(tiny_model_dir, toy_task_files, finish, switched):
    # finish=False: every rollout is wrong, every prompt switches to SFT (the RL batch is empty, the CE is not)
    hpt = {"loss": {"hybrid": {"class_path": "prefix_rft_pl.baselines.hybrids.HPT"}, "demo_sft_coef": 1.0},
           "update": {"mini_batches": 2}}
    _, trainer, _, _ = fit(tiny_model_dir, toy_task_files, hpt, engine_finish=finish, max_steps=2)
    assert trainer.callback_metrics["train/hpt_sft_prompts"].item() == switched
    assert trainer.global_step == 2
    grad_norm = trainer.callback_metrics["train/grad_norm"].item()
    # all switched: the CE alone moves the weights; all solved: every group's rewards are equal (advantage 0)
    assert (grad_norm > 0) if switched else grad_norm == 0.0
