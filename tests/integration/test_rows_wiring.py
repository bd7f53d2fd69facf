"""The baseline rows' machinery inside the module, with a scripted engine: ReLIFT's SFT step
on its own optimiser (not a training step), UFT's hints in every rollout's prompt and in the
graded text, its frozen KL reference, and the entropy bonus's gradient."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from callbacks import PrefixSchedule
from prefix_rft_pl.baselines.uft import hint_units
from prefix_rft_pl.types import PromptDemoBatch
from tests.helpers import RecordingEngine, build_module, items_from

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


def fit(tiny_model_dir, toy_task_files, settings, engine_finish=False, max_steps=2):
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
    trainer.fit(module, DataLoader(items, batch_size=4, collate_fn=PromptDemoBatch))
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
