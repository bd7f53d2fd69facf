"""Differentiable entropy (the baselines' entropy bonus): gradients of the chunked paths
against float64 autograd, and dH/dz = -p (log p + H) by hand on two tokens."""

import math

import pytest
import torch
import torch.nn.functional as F

from prefix_rft_pl.update.logprobs import token_logprobs_and_entropy
from tests.unit.test_logprobs import _as_head as _head  # the weight itself, or an nn.Linear holding it


@pytest.mark.parametrize("path", ["weight", "module"])
@pytest.mark.parametrize("chunk_size", [3, 512])
def test_entropy_and_logprob_gradients_match_float64_autograd(path, chunk_size):
    gen = torch.Generator().manual_seed(3)
    hidden, weight = torch.randn(2, 5, 8, generator=gen), torch.randn(11, 8, generator=gen)
    targets = torch.randint(0, 11, (2, 5), generator=gen)
    up_lp, up_ent = torch.randn(2, 5, generator=gen), torch.randn(2, 5, generator=gen)

    ref_h, ref_w = hidden.double().requires_grad_(), weight.double().requires_grad_()
    logp = F.log_softmax((ref_h @ ref_w.T) / 0.6, -1)                       # [2, 5, 11]
    ref_lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ref_ent = -(logp.exp() * logp).sum(-1)
    ((ref_lp * up_lp.double()).sum() + (ref_ent * up_ent.double()).sum()).backward()

    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    head = _head(w, path)
    lp, ent = token_logprobs_and_entropy(h, head, targets, 0.6, chunk_size, True, entropy_grad=True)
    ((lp * up_lp).sum() + (ent * up_ent).sum()).backward()
    w = w if path == "weight" else head.weight
    torch.testing.assert_close(ent.double(), ref_ent.detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(h.grad.double(), ref_h.grad, rtol=0, atol=1e-5)
    torch.testing.assert_close(w.grad.double(), ref_w.grad, rtol=0, atol=1e-5)


@pytest.mark.parametrize("path", ["weight", "module"])
def test_entropy_gradient_by_hand(path):
    # logits [0, z], z = ln 3: p = [1/4, 3/4]; dH/dz = -p_1 (log p_1 + H)
    hidden = torch.ones(1, 1, 1, requires_grad=True)
    weight = torch.tensor([[0.0], [math.log(3.0)]], requires_grad=True)
    head = _head(weight, path)
    _, ent = token_logprobs_and_entropy(hidden, head, torch.tensor([[1]]), entropy_grad=True)
    ent.sum().backward()
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    d_z1 = -0.75 * (math.log(0.75) + entropy)                                # dH/dz_1 = -0.0537...
    d_z0 = -0.25 * (math.log(0.25) + entropy)                                # +0.2061...
    grad_w = weight.grad if path == "weight" else head.weight.grad
    torch.testing.assert_close(grad_w, torch.tensor([[d_z0], [d_z1]]), rtol=0, atol=1e-6)


def test_entropy_has_no_gradient_by_default():
    hidden = torch.randn(1, 2, 4, requires_grad=True)
    _, ent = token_logprobs_and_entropy(hidden, torch.randn(5, 4), torch.tensor([[0, 1]]))
    assert not ent.requires_grad
