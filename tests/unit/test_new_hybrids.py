"""CHORD, SRFT and HPT (SPEC 3, rows beyond the paper's table): their loss terms against
hand-worked numbers, and the row overlays (configs/rows/chord.yaml, srft.yaml, hpt.yaml)
against their sources (each file names the source file and commit)."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from prefix_rft_pl.baselines.hybrids import HPT, SRFT, Chord
from prefix_rft_pl.config import Loss, Rollout, Settings
from prefix_rft_pl.losses import (
    chord_mu,
    chord_phi_weights,
    hpt_sft_prompts,
    sft_loss,
    srft_demo_weights,
    srft_rollout_weights,
)
from prefix_rft_pl.prefix import Trajectory, pad_trajectories
from prefix_rft_pl.types import PromptItem
from prefix_rft_pl.variants import ShapedPrefix, TokenMean, TokenSum
from tests.helpers import build_module

BASE = yaml.safe_load(Path("configs/toy/prefix_rft.yaml").read_text())["model"]
G2 = Rollout(group_size=2, num_hybrid=0)  # settings built directly, without the toy policy


def row_settings(row: str) -> Settings:
    overlay = yaml.safe_load(Path(f"configs/rows/{row}.yaml").read_text())["model"]
    return build_module(BASE["policy"], BASE, overlay).settings


# ---------------------------------------------------------------- CHORD (Trinity-RFT mix_chord)
@pytest.mark.parametrize("step, expected", [
    (0, 0.0),                                  # warm-up starts at 0
    (50, 0.25),                                # 50 / 100 x 0.5
    (100, 0.5),                                # peak at the end of the warm-up
    (150, 0.02 + 0.48 * 0.5 * (1 + math.cos(math.pi * 0.25))),  # 0.02 + 0.48 x 0.853553 = 0.429706
    (200, 0.26),                               # half-way: 0.02 + 0.48 x 0.5
    (300, 0.02),                               # valley at the end of the decay
    (1000, 0.02),                              # and after it
])
def test_chord_mu_warms_up_then_cosine_decays(step, expected):
    assert chord_mu(step, 100, 200, 0.5, 0.02) == pytest.approx(expected, abs=1e-12)


def test_chord_mu_without_warmup_or_decay():
    assert chord_mu(0, 0, 10, 0.9, 0.05) == pytest.approx(0.9)   # no warm-up: the peak at once
    assert chord_mu(5, 0, 0, 0.1, 0.1) == pytest.approx(0.1)     # CHORD-phi: a constant 0.1


def test_chord_phi_weights_are_p_one_minus_p_without_gradient():
    logprobs = torch.log(torch.tensor([[0.5, 0.9, 0.2]])).requires_grad_()
    mask = torch.tensor([[True, True, False]])
    weights = chord_phi_weights(logprobs, None, mask)
    torch.testing.assert_close(weights, torch.tensor([[0.25, 0.09, 0.0]]), rtol=0, atol=1e-7)
    assert not weights.requires_grad
    # the CE's gradient d/dlogp of -w log p is -w: the weight scales the demonstration token's gradient
    sft_loss(logprobs, mask, 0.3 * weights).sum().backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.075, -0.027, 0.0]]), rtol=0, atol=1e-7)


def test_chord_terms_mix_the_losses_with_mu():
    chord = Chord(mu_warmup_steps=10, mu_decay_steps=20, mu_peak=0.5, mu_valley=0.02)
    terms, metrics = chord.terms(5)                          # mu = 5 / 10 x 0.5 = 0.25
    assert (terms.sft_coef, terms.rl_scale, metrics["train/chord_mu"]) == pytest.approx((0.25, 0.75, 0.25))
    assert terms.sft_weights is chord_phi_weights and terms.rollout_rewards is None


def test_chord_row_settings_from_trinity():
    s = row_settings("chord")
    c = s.loss.hybrid
    assert isinstance(c, Chord)
    assert (c.mu_peak, c.mu_valley, c.phi) == (0.5, 0.02, True)
    assert c.mu_decay_steps == pytest.approx(2 * c.mu_warmup_steps, abs=1)  # Trinity's 200:400, over the toy's 100
    assert c.mu_warmup_steps + c.mu_decay_steps == 100
    assert (s.rollout.num_hybrid, s.loss.advantage_std, s.loss.demo_sft_coef) == (0, True, 0.0)
    assert (s.loss.clip.eps_low, s.loss.clip.eps_high, s.loss.entropy_coef, s.loss.kl_coef) == (0.2, 0.2, 0.0, 0.0)
    assert isinstance(s.loss.aggregation, TokenMean) and s.update.mini_batches == 1


# ---------------------------------------------------------------- SRFT (HPT's srft branch)
def test_srft_rollout_weights_by_correctness_and_entropy():
    # row 0 correct, mean entropy (1 + 3) / 2 = 2: W = 0.1 e^2 = 0.738906; row 1 wrong: W = -1
    entropy = torch.tensor([[1.0, 3.0, 9.0], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    weights = srft_rollout_weights(torch.tensor([1.0, 0.0]), entropy, mask, 0.1, 1.0)
    expected = torch.tensor([[0.1 * math.e ** 2, 0.1 * math.e ** 2, 0.0], [-1.0, -1.0, -1.0]])
    torch.testing.assert_close(weights, expected, rtol=0, atol=1e-6)


def test_srft_rollout_loss_gradient_is_minus_w_whatever_the_ratio():
    # -W log pi (sft_loss with SRFT's weights W): d/dlogp = -W, with no ratio (old log-probs play no part), no clip
    logprobs = torch.tensor([[math.log(0.3), math.log(0.6)]], requires_grad=True)
    weights = torch.tensor([[0.5, -1.0]])
    loss = sft_loss(logprobs, torch.ones(1, 2, dtype=torch.bool), weights)
    torch.testing.assert_close(loss.detach(), torch.tensor([[-0.5 * math.log(0.3), math.log(0.6)]]))
    loss.sum().backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.5, 1.0]]), rtol=0, atol=0)


def test_srft_demo_weights_fall_as_entropy_rises():
    # demonstration 0: mean entropy 0 -> exp(0) = 1; demonstration 1: mean (1 + 2) / 2 = 1.5 -> e^-1.5 = 0.223130
    entropy = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    weights = srft_demo_weights(torch.zeros(2, 2), entropy, mask)
    torch.testing.assert_close(weights, torch.tensor([[1.0, 1.0], [math.exp(-1.5)] * 2]), rtol=0, atol=1e-7)
    assert weights[1, 0] < weights[0, 0]


def test_srft_terms_carry_the_rewards_and_the_entropy_weights():
    settings = Settings(rollout=G2, loss=Loss(demo_sft_coef=0.5, hybrid=SRFT(positive_coef=0.2)))
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    _, _, terms, _ = settings.loss.hybrid.step_terms(settings, 0, [], rewards, None)
    assert terms.sft_coef == 0.5 and terms.sft_weights is srft_demo_weights and terms.rl_scale == 1.0
    torch.testing.assert_close(terms.rollout_rewards, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    # the row's constants reach the weights: 0.2 x e^0 on a correct rollout of zero entropy
    weights = terms.rollout_weights(torch.tensor([1.0]), torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.bool))
    torch.testing.assert_close(weights, torch.tensor([[0.2]]))


def test_srft_row_settings_from_hpt_repository():
    s = row_settings("srft")
    srft = s.loss.hybrid
    assert isinstance(srft, SRFT)
    assert (srft.positive_coef, srft.negative_weight, s.loss.demo_sft_coef) == (0.1, 1.0, 0.5)
    assert (s.rollout.num_hybrid, s.loss.advantage_std, s.loss.advantage_baseline) == (1, False, "group")
    assert isinstance(s.prefix.rule, ShapedPrefix) and s.prefix.rule.gamma == 0.1 and s.prefix.selection == "none"
    assert isinstance(s.loss.aggregation, TokenSum) and (s.loss.entropy_coef, s.update.mini_batches) == (0.001, 2)


# ---------------------------------------------------------------- HPT (switch_gate)
def test_hpt_switch_sends_unsolved_prompts_to_sft():
    rewards = torch.tensor([[0.0, 0.0, 0.0, 0.0],    # 0 correct -> SFT
                            [1.0, 0.0, 0.0, 0.0],    # 1 correct -> RL
                            [1.0, 1.0, 1.0, 1.0],    # all correct -> RL
                            [0.5, 0.0, 0.0, 0.0]])   # partial credit is not a success (reward == 1) -> SFT
    assert hpt_sft_prompts(rewards, 0).tolist() == [True, False, False, True]
    assert hpt_sft_prompts(rewards, 1).tolist() == [True, True, False, True]   # gate 1: at most one success


def test_hpt_split_empties_switched_rollouts_and_keeps_their_demonstrations_only():
    settings = Settings(rollout=G2, loss=Loss(demo_sft_coef=1.0, hybrid=HPT(gate=0)))
    items = [PromptItem(f"p{i}", [1], [[7, 8]], ["x"]) for i in range(2)]
    trajectories = [Trajectory(i // 2, [1], [5, 6], [], None, "stop") for i in range(4)]
    tb = pad_trajectories(trajectories, 0)
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0]])               # prompt 1 unsolved -> SFT
    update_tb, targets, terms, metrics = settings.loss.hybrid.step_terms(settings, 0, items, rewards, tb)
    assert update_tb.mask.any(-1).tolist() == [True, True, False, False]
    assert tb.mask.all()                                            # the logged batch is untouched
    assert [t.demo_ids for t in targets] == [[], [[7, 8]]]
    assert terms.sft_coef == 1.0 and metrics["train/hpt_sft_prompts"] == 0.5


def test_hpt_row_settings_from_its_script():
    s = row_settings("hpt")
    assert isinstance(s.loss.hybrid, HPT)
    assert (s.loss.hybrid.gate, s.loss.demo_sft_coef, s.rollout.num_hybrid, s.loss.advantage_std) == (0, 1.0, 0, False)
    assert (s.loss.clip.eps_low, s.loss.clip.eps_high, s.loss.entropy_coef, s.update.mini_batches) == (
        1.0, math.inf, 0.001, 2)
    assert isinstance(s.loss.aggregation, TokenSum)


def test_hybrid_variants_are_checked():
    with pytest.raises(ValueError, match="model.loss.demo_sft_coef: Chord weighs its CE itself"):
        Loss(demo_sft_coef=1.0, hybrid=Chord())
    with pytest.raises(ValueError, match="model.loss.demo_sft_coef: HPT needs it > 0"):
        Loss(hybrid=HPT())
    with pytest.raises(ValueError, match="model.loss.hybrid.mu_peak"):
        Chord(mu_peak=1.5)
    with pytest.raises(ValueError, match="model.loss.hybrid.gate"):
        HPT(gate=-1)
