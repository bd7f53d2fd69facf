import math

import pytest
import torch

from prefix_rft_pl.update.logprobs import (
    logprobs_from_model,
    naive_token_logprobs_and_entropy,
    token_logprobs_and_entropy,
)


def _inputs(n=2, t=5, h=8, v=11, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, t, h, generator=gen)
    weight = torch.randn(v, h, generator=gen)
    targets = torch.randint(0, v, (n, t), generator=gen)
    return hidden, weight, targets


def _as_head(weight, path):
    """The weight itself, or an nn.Linear holding it (the module / FSDP2 path)."""
    if path == "weight":
        return weight
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    head.weight = torch.nn.Parameter(weight)
    return head


@pytest.mark.parametrize("path", ["weight", "module"])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("chunk_size", [3, 4, 512])  # 3 and 4 do not divide N*T = 10
def test_values_match_float64_reference(path, temperature, chunk_size):
    hidden, weight, targets = _inputs()
    ref_lp, ref_ent = naive_token_logprobs_and_entropy(
        hidden.double() @ weight.double().T, targets, temperature
    )
    lp, ent = token_logprobs_and_entropy(
        hidden, _as_head(weight, path), targets, temperature, chunk_size
    )
    assert lp.dtype == ent.dtype == torch.float32 and lp.shape == ent.shape == (2, 5)
    torch.testing.assert_close(lp.double(), ref_lp, rtol=0, atol=1e-5)
    torch.testing.assert_close(ent.double(), ref_ent, rtol=0, atol=1e-5)


@pytest.mark.parametrize("path", ["weight", "module"])
def test_two_token_vocab_by_hand(path):
    # hidden = 1, W = [0, ln 3] -> logits [0, ln 3] -> probs [1/4, 3/4]
    hidden = torch.ones(1, 1, 1)
    weight = torch.tensor([[0.0], [math.log(3.0)]])
    lp, ent = token_logprobs_and_entropy(hidden, _as_head(weight, path), torch.tensor([[1]]))
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))  # 0.5623...
    torch.testing.assert_close(lp, torch.tensor([[math.log(0.75)]]), rtol=0, atol=1e-6)
    torch.testing.assert_close(ent, torch.tensor([[entropy]]), rtol=0, atol=1e-6)
    # temperature 2 halves the logits: [0, ln 3 / 2] -> probs [1, sqrt 3] / (1 + sqrt 3)
    lp, _ = token_logprobs_and_entropy(hidden, _as_head(weight, path), torch.tensor([[0]]), 2.0)
    expected = -math.log(1 + math.sqrt(3.0))
    torch.testing.assert_close(lp, torch.tensor([[expected]]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("path", ["weight", "module"])
@pytest.mark.parametrize("chunk_size", [3, 512])
def test_gradients_match_float64_reference(path, chunk_size):
    hidden, weight, targets = _inputs(seed=1)
    upstream = torch.randn(2, 5, generator=torch.Generator().manual_seed(2))  # not all ones

    ref_hidden = hidden.double().requires_grad_()
    ref_weight = weight.double().requires_grad_()
    ref_lp, _ = naive_token_logprobs_and_entropy(ref_hidden @ ref_weight.T, targets, 0.6)
    (ref_lp * upstream.double()).sum().backward()

    hidden.requires_grad_()
    weight.requires_grad_()
    head = _as_head(weight, path)
    lp, _ = token_logprobs_and_entropy(hidden, head, targets, 0.6, chunk_size)
    (lp * upstream).sum().backward()
    grad_weight = weight.grad if path == "weight" else head.weight.grad

    torch.testing.assert_close(hidden.grad.double(), ref_hidden.grad, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad_weight.double(), ref_weight.grad, rtol=0, atol=1e-5)


def test_entropy_carries_no_gradient_and_can_be_skipped():
    hidden, weight, targets = _inputs()
    hidden.requires_grad_()
    lp, ent = token_logprobs_and_entropy(hidden, weight, targets, chunk_size=4)
    assert lp.requires_grad and not ent.requires_grad
    lp_only, none = token_logprobs_and_entropy(hidden, weight, targets, with_entropy=False)
    assert none is None
    torch.testing.assert_close(lp_only, lp, rtol=0, atol=0)


def test_tiny_qwen2_matches_model_logits(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, 259, (2, 9), generator=gen)
    attention_mask = torch.ones(2, 9, dtype=torch.long)
    attention_mask[1, :3] = 0  # left padding
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    targets = torch.roll(input_ids, -1, dims=1)

    logits = model(input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    ref_lp, ref_ent = naive_token_logprobs_and_entropy(logits, targets, 0.8)
    (ref_lp * attention_mask).sum().backward()
    ref_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    lp, ent = logprobs_from_model(
        model, input_ids, attention_mask, position_ids, targets, temperature=0.8, chunk_size=5
    )
    (lp * attention_mask).sum().backward()

    torch.testing.assert_close(lp, ref_lp, rtol=0, atol=1e-5)
    torch.testing.assert_close(ent, ref_ent, rtol=0, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_weight_gradient_error_does_not_grow_with_chunks():
    # one bf16 rounding of the whole product: ~0.002-0.004 relative. Summing 64 chunk products
    # in a bf16 accumulator adds a rounding per chunk (measured 0.0085 at 64 chunks); the
    # float32 accumulator keeps one rounding per chunk product and one at the end.
    from benchmarks.precision_update import bf16_weight_grad_error

    one, many = bf16_weight_grad_error(1), bf16_weight_grad_error(64)
    assert one < 0.005, one
    assert many < 1.5 * one, (one, many)
