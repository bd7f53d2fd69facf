"""The step's passes (prefix_rft_pl.update) on the module, with a scripted engine: which rows the
separate no-grad pass and the update run on, and a gradient equal to the full-batch one computed
by hand (every row, old log-probs = current ones detached)."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

import prefix_rft_pl.module
import prefix_rft_pl.update.forward
from callbacks import EntropyStats, PrefixSchedule
from prefix_rft_pl import losses
from prefix_rft_pl.config import Clip
from prefix_rft_pl.types import PromptDemoBatch, Rollout
from prefix_rft_pl.variants import PPOPrefix
from tests.helpers import GradRecorder, ScriptedEngine, build_module, items_from

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


class HalfSolvedEngine(ScriptedEngine):
    """Prompt 0: every ordinary sample finishes the demonstration (a group of equal rewards, all
    advantages 0); the other prompts as ScriptedEngine (mixed rewards)."""

    def generate(self, requests, sampling):
        out = super().generate(requests, sampling)
        flat = [r for r in requests for _ in range(r.num_samples)]
        first = tuple(flat[0].prompt_ids)
        return [Rollout(list(self.demos[first]), [0.0] * len(self.demos[first]), "stop")
                if tuple(r.prompt_ids) == first and not r.prefix_ids else o for r, o in zip(flat, out)]


def run(tiny_model_dir, toy_task_files, monkeypatch, settings=None):
    """One step; returns the recorded gradient, the calls of response_logprobs (rows, grad
    enabled) and the arguments of `update.steps.optimise` (less the passes and the optimiser)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    items = items_from(tokenizer, toy_task_files["train"], 4)
    module = build_module(str(tiny_model_dir), {"rollout": {"group_size": 4, "max_response_tokens": 48},
                                                "reward": {"workers": 1}, "update": {"micro_batch_size": 16}},
                          settings or {})
    module.engine = HalfSolvedEngine(tokenizer, items)
    calls, updates = [], []
    original = prefix_rft_pl.update.forward.response_logprobs

    def spy(model, tb, *args, **kwargs):
        calls.append((tb.response_ids.shape[0], torch.is_grad_enabled()))
        return original(model, tb, *args, **kwargs)

    monkeypatch.setattr(prefix_rft_pl.update.forward, "response_logprobs", spy)
    optimise = prefix_rft_pl.module.optimise
    monkeypatch.setattr(prefix_rft_pl.module, "optimise", lambda p, o, *a: updates.append(a) or optimise(p, o, *a))
    recorder = GradRecorder()
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[PrefixSchedule(kind="constant", low_start=0.5, high=0.5), recorder, EntropyStats()])
    torch.manual_seed(0)
    trainer.fit(module, DataLoader(items, batch_size=4, collate_fn=PromptDemoBatch))
    return recorder.grads[0], calls, updates, trainer.callback_metrics


def reference_gradient(tiny_model_dir, tb, token_advantages) -> dict[str, torch.Tensor]:
    """Dr. GRPO over every row in one forward, old log-probs = the current ones detached."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    logprobs, _ = prefix_rft_pl.update.forward.response_logprobs(model, tb, 1.0, 128, False)
    per_token = losses.token_losses(logprobs, logprobs.detach(), token_advantages, tb.generated_mask, tb.prefix_mask,
                                    PPOPrefix(), Clip())
    losses.aggregate_constant(per_token, len(tb.response_ids), 48).backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_one_step_per_batch_skips_rows_without_gradient_and_reuses_old_logprobs(tiny_model_dir, toy_task_files,
                                                                                 monkeypatch):
    grads, calls, updates, metrics = run(tiny_model_dir, toy_task_files, monkeypatch)
    tb, old_logprobs, token_advantages = updates[0][:3]
    assert old_logprobs is None  # the update's own log-probs, detached
    skipped = ~token_advantages.ne(0).any(-1)                                 # [16]
    assert skipped.tolist() == [True] * 4 + [False] * 12  # prompt 0's group: equal rewards
    hybrid = tb.prefix_mask.any(-1)
    no_grad_rows = sum(n for n, grad in calls if not grad)
    grad_rows = sum(n for n, grad in calls if grad)
    assert no_grad_rows == int((hybrid | skipped).sum()) == 7  # 3 hybrids with a gradient + 4 skipped rows
    assert grad_rows == 12
    reference = reference_gradient(tiny_model_dir, tb, token_advantages)
    assert any(g.abs().sum() > 0 for g in grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference[name], rtol=1e-5, atol=1e-9)
    # the metrics still cover every row: the skipped ones from the separate pass
    assert metrics["rollout/logprob_diff_max"] > 0 and metrics["entropy/generated_mean"] > 0


@pytest.mark.parametrize("settings", [{"update": {"mini_batches": 2}}, {"update": {"ppo_epochs": 2}},
                                      {"loss": {"tis_cap": 2.0}}])
def test_several_steps_per_batch_keep_the_separate_pass_over_every_row(tiny_model_dir, toy_task_files, monkeypatch,
                                                                       settings):
    _, calls, updates, _ = run(tiny_model_dir, toy_task_files, monkeypatch, settings)
    tb, old_logprobs = updates[0][:2]
    assert old_logprobs is not None and old_logprobs.shape == tb.mask.shape
    assert sum(n for n, grad in calls if not grad) == 16  # the separate pass: all rows, before any step
