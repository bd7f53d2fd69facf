import pytest
import torch

from prefix_rft_pl.optim import OPTIMIZERS, build_optimizer


def _params():
    big = torch.nn.Parameter(torch.randn(64, 128))  # 8192 >= bitsandbytes' min_8bit_size (4096)
    frozen = torch.nn.Parameter(torch.zeros(3), requires_grad=False)
    return [big, frozen]


@pytest.mark.parametrize("name,cls", [("adamw", "AdamW"), ("adamw8bit", "AdamW8bit"),
                                      ("paged_adamw8bit", "PagedAdamW8bit")])
def test_build_optimizer_names(name, cls):
    opt = build_optimizer(name, _params(), lr=1e-3, weight_decay=0.01)
    assert type(opt).__name__ == cls  # plain tensors: bitsandbytes' own class, no LocalShards
    (group,) = opt.param_groups
    assert len(group["params"]) == 1 and group["lr"] == 1e-3 and group["weight_decay"] == 0.01  # frozen left out


def test_unknown_optimizer_names_the_choices():
    with pytest.raises(ValueError,
                       match=r"model.optimizer must be one of 'adamw', 'adamw8bit', 'paged_adamw8bit', got 'sgd'"):
        build_optimizer("sgd", _params(), lr=1e-3, weight_decay=0.0)
    assert OPTIMIZERS == ("adamw", "adamw8bit", "paged_adamw8bit")


def test_adamw8bit_first_step_is_lr_times_sign_of_gradient():
    # Adam's first step: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps) = lr * sign(g)
    # (|g| >= 0.1 keeps eps = 1e-8 out of the tolerance)
    (big, _) = params = _params()
    before = big.detach().clone()
    opt = build_optimizer("adamw8bit", params, lr=1e-2, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    big.grad = torch.randn(big.shape, generator=gen).sign() * (0.1 + torch.rand(big.shape, generator=gen))
    opt.step()
    assert opt.state[big]["state1"].dtype == torch.uint8  # the 8-bit state
    torch.testing.assert_close(big.detach(), before - 1e-2 * big.grad.sign(), rtol=0, atol=1e-5)
