"""Each row of the paper's table (SPEC 3) as configured in configs/toy/rows: its per-token
weights W_t on a hand-made batch, read off the gradient of the per-token loss
(d loss / d log pi = -W_t at ratio 1), against the row's definition."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from prefix_rft_pl.losses import token_losses
from prefix_rft_pl.module import PrefixRFTModule

BASE = yaml.safe_load(Path("configs/toy/prefix_rft.yaml").read_text())["model"]


def row_hparams(row: str) -> dict:
    overlay = {} if row == "prefix_rft" else yaml.safe_load(Path(f"configs/toy/rows/{row}.yaml").read_text())["model"]
    return PrefixRFTModule(**{**BASE, **overlay}).hparams


def weights(hp, advantage: float, prob: float, kept: bool):
    """W_t of [generated token, prefix token] for a trajectory with this advantage."""
    logprobs = torch.full((1, 2), math.log(prob), requires_grad=True)
    old = logprobs.detach().clone()                                   # ratio 1
    generated = torch.tensor([[True, False]])
    prefix = torch.tensor([[False, True]])
    adv = torch.tensor([[advantage, advantage if kept else 0.0]])      # kept set applied by the module
    token_losses(logprobs, old, adv, generated, prefix, hp.prefix_rule, hp.eps_low, hp.eps_high,
                 hp.dual_clip, hp.shaping_gamma, hp.prefix_sft_weight).sum().backward()
    return (-logprobs.grad)[0].tolist()


def test_prefix_rft_gives_prefix_tokens_the_trajectorys_advantage():
    hp = row_hparams("prefix_rft")
    assert hp.num_hybrid == 1 and hp.prefix_token_keep == 0.2 and hp.prefix_selection == "top"
    assert weights(hp, 0.5, 0.3, kept=True) == pytest.approx([0.5, 0.5])
    assert weights(hp, 0.5, 0.3, kept=False) == pytest.approx([0.5, 0.0])  # outside the top-20%


def test_sft_weight_one_on_every_demonstration_token():
    hp = row_hparams("sft")
    assert hp.group_size == 1 and hp.prefix_rule == "sft" and hp.prefix_sft_weight == 1.0
    assert weights(hp, 0.0, 0.3, kept=True)[1] == pytest.approx(1.0)


def test_uft_static_weight_on_prefix_and_rl_on_the_continuation():
    hp = row_hparams("uft")
    assert weights(hp, -0.25, 0.3, kept=True) == pytest.approx([-0.25, 0.001])


def test_luffy_policy_shaping_on_demonstration_tokens():
    hp = row_hparams("luffy")
    # d/dlogp of A * p/(p+g) = A * g p / (p+g)^2; p = 0.3, g = 0.1: 0.5 * 0.03 / 0.16 = 0.09375
    assert weights(hp, 0.5, 0.3, kept=True) == pytest.approx([0.5, 0.09375])
    # no clipping on demonstration tokens: ratio far from 1 still gets the shaped weight
    assert hp.prefix_rule == "shaped" and hp.prefix_selection == "none"


@pytest.mark.parametrize("row", ["rft", "rl_sft_loss", "relift"])
def test_rl_rows_have_no_hybrid_rollout(row):
    hp = row_hparams(row)
    assert hp.num_hybrid == 0
    assert weights(hp, 0.5, 0.3, kept=True)[0] == pytest.approx(0.5)  # plain Dr. GRPO weight A
    assert hp.demo_sft_coef == (0.1 if row == "rl_sft_loss" else 0.0)
    assert hp.relift == (row == "relift")
