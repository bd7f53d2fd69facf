"""Each row of the paper's table (SPEC 3) as configured in configs/rows: its per-token
weights W_t on a hand-made batch, read off the gradient of the per-token loss
(d loss / d log pi = -W_t at ratio 1, or at the ratio given), against the row's definition
in its source (the row configs name the file and commit); and the rows' extra machinery
(UFT's hints, ReLIFT's buffer and optimiser, LUFFY's clip, normalisation and entropy terms)
against hand-computed values."""

import math
import random
from pathlib import Path

import pytest
import torch
import yaml

from prefix_rft_pl.baselines.relift import relift_buffer_step
from prefix_rft_pl.baselines.uft import hint_boundaries, hint_units, sample_hint_length, uft_hint_prob, with_hints
from prefix_rft_pl.config import Settings
from prefix_rft_pl.losses import aggregate_token_sum, entropy_bonus, group_advantages, low_var_kl, token_losses
from prefix_rft_pl.types import PromptItem
from prefix_rft_pl.update.rows import mini_batch_prompts
from prefix_rft_pl.variants import SFTPrefix, ShapedPrefix, TokenMean, TokenSum
from tests.helpers import build_module

BASE = yaml.safe_load(Path("configs/toy/prefix_rft.yaml").read_text())["model"]


def row_hparams(row: str) -> Settings:
    overlay = {} if row == "prefix_rft" else yaml.safe_load(Path(f"configs/rows/{row}.yaml").read_text())["model"]
    return build_module(BASE["policy"], BASE, overlay).settings


def weights(hp, advantage: float, prob: float, kept: bool, ratio: float = 1.0):
    """W_t of [generated token, prefix token] for a trajectory with this advantage."""
    logprobs = torch.full((1, 2), math.log(prob), requires_grad=True)
    old = logprobs.detach().clone() - math.log(ratio)                 # pi / pi_old = ratio
    generated = torch.tensor([[True, False]])
    prefix = torch.tensor([[False, True]])
    adv = torch.tensor([[advantage, advantage if kept else 0.0]])      # kept set applied by the module
    token_losses(logprobs, old, adv, generated, prefix, hp.prefix.rule, hp.loss.clip).sum().backward()
    return (-logprobs.grad)[0].tolist()


def test_prefix_rft_gives_prefix_tokens_the_trajectorys_advantage():
    hp = row_hparams("prefix_rft")
    assert hp.rollout.num_hybrid == 1 and hp.prefix.token_keep == 0.2 and hp.prefix.selection == "top"
    assert weights(hp, 0.5, 0.3, kept=True) == pytest.approx([0.5, 0.5])
    assert weights(hp, 0.5, 0.3, kept=False) == pytest.approx([0.5, 0.0])  # outside the top-20%


def test_sft_weight_one_on_every_demonstration_token():
    hp = row_hparams("sft")
    assert hp.rollout.group_size == 1 and isinstance(hp.prefix.rule, SFTPrefix) and hp.prefix.rule.weight == 1.0
    assert weights(hp, 0.0, 0.3, kept=True)[1] == pytest.approx(1.0)


def test_luffy_policy_shaping_on_demonstration_tokens():
    hp = row_hparams("luffy")
    # d/dlogp of A * p/(p+g) = A * g p / (p+g)^2; p = 0.3, g = 0.1: 0.5 * 0.03 / 0.16 = 0.09375
    assert weights(hp, 0.5, 0.3, kept=True) == pytest.approx([0.5, 0.09375])
    # no clipping on demonstration tokens: ratio far from 1 still gets the shaped weight
    assert isinstance(hp.prefix.rule, ShapedPrefix) and hp.prefix.selection == "none"


@pytest.mark.parametrize("row", ["rft", "relift", "uft"])
def test_rl_rows_have_no_hybrid_rollout(row):
    hp = row_hparams(row)
    assert hp.rollout.num_hybrid == 0
    assert weights(hp, 0.5, 0.3, kept=True)[0] == pytest.approx(0.5)  # policy-gradient weight A at ratio 1
    assert (hp.relift is not None) == (row == "relift")


# ---------------------------------------------------------------- LUFFY (ElliottYan/LUFFY exp_scripts/train.sh)
@pytest.mark.parametrize("row", ["luffy", "rl_sft_loss", "relift"])
def test_luffy_family_has_no_clip_on_on_policy_tokens(row):
    hp = row_hparams(row)
    # ratio e (> 1.2) with A = +1: a clipped surrogate gives weight 0, LUFFY's unclipped one A * r = e
    assert weights(hp, 1.0, 0.3, kept=True, ratio=math.e)[0] == pytest.approx(math.e)
    # ratio 0.5 (< 0.8) with A = -1: clipped 0, unclipped A * r = -0.5
    assert weights(hp, -1.0, 0.3, kept=True, ratio=0.5)[0] == pytest.approx(-0.5)


def test_prefix_rft_keeps_the_clip():
    assert weights(row_hparams("prefix_rft"), 1.0, 0.3, kept=True, ratio=math.e)[0] == pytest.approx(0.0)


def test_luffy_settings_from_its_script():
    hp = row_hparams("luffy")
    assert (hp.rollout.num_hybrid, hp.loss.advantage_baseline, hp.loss.advantage_std) == (1, "group", False)
    assert isinstance(hp.loss.aggregation, TokenSum)
    assert (hp.loss.entropy_coef, hp.update.mini_batches, hp.optim.max_grad_norm) == (0.001, 2, 1.0)


def test_token_sum_divides_by_max_length_only():
    # LUFFY's loss_remove_token_mean: (1 + 2 + 3 + 0) / 4 = 1.5, whatever the number of sequences
    assert aggregate_token_sum(torch.tensor([[1.0, 2.0], [3.0, 0.0]]), 4).item() == pytest.approx(1.5)


def test_entropy_bonus_is_minus_coef_times_entropy_on_counted_tokens():
    out = entropy_bonus(torch.tensor([[2.0, 4.0]]), torch.tensor([[True, False]]), 0.001)
    torch.testing.assert_close(out, torch.tensor([[-0.002, 0.0]]), rtol=0, atol=1e-9)


# -------------------------------------------------------- RL w/ SFT loss (LUFFY exp_scripts/train_rl_sft_loss.sh)
def test_rl_sft_loss_demonstration_replaces_a_rollout_and_takes_only_the_sft_term():
    hp = row_hparams("rl_sft_loss")
    assert (hp.rollout.num_hybrid, hp.loss.demo_sft_coef, hp.loss.advantage_baseline,
            hp.loss.advantage_std) == (1, 1.0, "ordinary", False)
    # generated tokens: W = A; demonstration tokens: no policy-gradient term (CE comes from demo_sft_coef)
    assert weights(hp, 0.5, 0.3, kept=True) == pytest.approx([0.5, 0.0])


def test_rl_sft_loss_baseline_from_on_policy_rollouts():
    # ordinary rewards [1, 0, 0] -> baseline 1/3; the demonstration (last, reward 1) is not in it
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    on_policy = torch.tensor([[True, True, True, False]])
    expected = torch.tensor([[2 / 3, -1 / 3, -1 / 3, 2 / 3]])
    torch.testing.assert_close(group_advantages(rewards, on_policy, False), expected, rtol=0, atol=1e-6)


def test_demonstration_ce_is_taken_per_mini_batch_of_prompts():
    # 16 prompts x G = 8 in 2 mini-batches of 64 trajectories: prompts 0-7, then 8-15
    assert mini_batch_prompts(slice(0, 64), 8) == slice(0, 8)
    assert mini_batch_prompts(slice(64, 128), 8) == slice(8, 16)
    # a boundary inside a group (G = 4, rows 3-12): prompts 0, 1, 2 and 3 (0 and 3 cut)
    assert mini_batch_prompts(slice(3, 13), 4) == slice(0, 4)


# ---------------------------------------------------------------- ReLIFT (TheRoadQaQ/ReLIFT examples/math-7b/train.sh)
def test_relift_settings_from_its_script():
    hp = row_hparams("relift")
    assert isinstance(hp.loss.aggregation, TokenSum)
    assert (hp.loss.advantage_std, hp.loss.entropy_coef, hp.update.mini_batches) == (False, 0.001, 2)
    assert (hp.optim.max_grad_norm, hp.relift.sft_entropy_coef, hp.relift.sft_max_grad_norm) == (0.7, 0.001, 1.0)


def test_relift_buffer_newest_first_and_leaves_a_batch():
    # ReLIFT: concat([new, buffer]), then the first sft_data_size leave
    assert relift_buffer_step(["a", "b"], ["c", "d"], 3) == (["c", "d", "a"], ["b"])
    assert relift_buffer_step(["a", "b"], ["c", "d"], 5) == ([], ["c", "d", "a", "b"])
    assert relift_buffer_step([], ["c", "d"], 2) == (["c", "d"], [])


def test_relift_has_its_own_optimiser(tiny_model_dir):
    module = build_module(str(tiny_model_dir), {"relift": {"sft_lr": 3e-5}, "optim": {"lr": 1e-4}})
    module.configure_model()
    (rl, sft), schedules = module.configure_optimizers()  # the learning-rate schedule is the RL one's only
    assert rl is not sft and rl.param_groups[0]["lr"] == 1e-4 and sft.param_groups[0]["lr"] == 3e-5
    assert {id(p) for p in rl.param_groups[0]["params"]} == {id(p) for p in sft.param_groups[0]["params"]}
    assert len(schedules) == 1 and schedules[0]["scheduler"].optimizer is rl
    plain = build_module(str(tiny_model_dir))
    plain.configure_model()
    assert isinstance(plain.configure_optimizers()["optimizer"], torch.optim.Optimizer)  # one without ReLIFT


# ---------------------------------------------------------------- UFT (liumy2010/UFT verl/utils/dataset/rl_dataset.py)
def test_uft_settings_from_its_code():
    hp = row_hparams("uft")
    assert (hp.rollout.num_hybrid, hp.loss.advantage_std, hp.loss.kl_coef, hp.loss.entropy_coef) == (0, True, 0.001,
                                                                                                    0.001)
    assert isinstance(hp.loss.aggregation, TokenMean)
    assert (hp.loss.demo_sft_coef, hp.update.mini_batches, hp.loss.clip.eps_low, hp.loss.clip.eps_high) == (0.001, 4,
                                                                                                           0.2, 0.2)
    assert (hp.hints.prob_start, hp.hints.prob_end, hp.hints.max_segments) == (0.95, 0.05, 5) and hp.hints.steps > 0


def test_uft_hint_probability_cosine_then_none():
    assert uft_hint_prob(0, 300) == pytest.approx(0.95)
    assert uft_hint_prob(150, 300) == pytest.approx(0.5)      # 0.05 + 0.45 * (1 + cos(pi / 2))
    assert uft_hint_prob(100, 300) == pytest.approx(0.05 + 0.45 * 1.5)  # cos(pi / 3) = 0.5 -> 0.725
    assert uft_hint_prob(300, 300) == pytest.approx(0.05)
    assert uft_hint_prob(301, 300) == 0.0                     # after T_hint: no hint


def test_uft_hint_segments():
    assert hint_boundaries(30) == [0, 6, 12, 18, 24, 30]
    assert hint_boundaries(4) == [0, 1, 2, 3, 4]              # fewer units than segments: one unit each
    assert hint_boundaries(7) == [0, 1, 3, 4, 6, 7]           # round(1.4), round(2.8), round(4.2), round(5.6)
    assert hint_boundaries(0) == [0]


class ScriptedRandom:
    def __init__(self, draws):
        self.draws = iter(draws)

    def random(self):
        return next(self.draws)


def test_uft_hint_length_is_binomial_count_of_segments():
    # p = 0.5, draws [0.1, 0.9, 0.2, 0.95, 0.3]: three below 0.5 -> k = 3 -> the first 18 of 30 tokens
    assert sample_hint_length(30, 0.5, ScriptedRandom([0.1, 0.9, 0.2, 0.95, 0.3])) == 18
    assert sample_hint_length(30, 0.0, random.Random(0)) == 0
    assert sample_hint_length(30, 1.0, random.Random(0)) == 30
    counts = [sample_hint_length(5, 0.3, rng) for rng in [random.Random(0)] for _ in range(20000)]
    assert sum(counts) / len(counts) == pytest.approx(5 * 0.3, abs=0.03)  # E[k] = n p, 5 one-token segments


def test_uft_hints_go_into_every_rollouts_prompt_and_become_the_ce_target():
    eos = 0
    items = [PromptItem("a", [1, 2], [[5, 6, 7, 8, eos]], ["x"]), PromptItem("b", [3], [[9, 9, eos]], ["y"])]
    hinted, targets = with_hints(items, [2, 0], eos)
    assert [i.prompt_ids for i in hinted] == [[1, 2, 5, 6], [3]]
    assert [i.demo_ids for i in targets] == [[[5, 6]], []]   # no CE target where the hint is empty
    assert [i.prompt_ids for i in targets] == [[1, 2], [3]]
    assert hint_units([5, 6, eos], eos) == [5, 6]             # the EOS is never part of a hint


def test_low_var_kl_by_hand():
    # pi = 0.5, pi_ref = 0.25: r = 0.5, kl = r - ln r - 1 = 0.5 + ln 2 - 1 = 0.193147
    out = low_var_kl(torch.tensor([[math.log(0.5), 0.0]]), torch.tensor([[math.log(0.25), 0.0]]),
                     torch.tensor([[True, True]]), coef=0.001)
    torch.testing.assert_close(out, torch.tensor([[0.001 * (0.5 + math.log(2) - 1), 0.0]]), rtol=0, atol=1e-9)
    # its gradient in log pi: d/dlogp (r - log r - 1) = 1 - r = 0.5 (pulls pi down towards pi_ref)
    logp = torch.tensor([math.log(0.5)], requires_grad=True)
    low_var_kl(logp, torch.tensor([math.log(0.25)]), torch.tensor([True])).sum().backward()
    assert logp.grad.item() == pytest.approx(0.5)
