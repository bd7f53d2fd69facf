"""`response_logprobs` leaves out the columns that are padding in every row (left of the
longest prompt, right of the longest response): same log-probs, entropies and gradients as
the full-width forward, 0 on the columns left out."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from prefix_rft_pl.prefix import Trajectory, TrajectoryBatch, pad_trajectories
from prefix_rft_pl.update.forward import padding_columns, response_logprobs


def test_padding_columns_by_hand():
    # P = 4: rows' prompts start at columns 2 and 1 -> 1 column of padding on the left;
    # T = 5: the longest response ends at response column 2 -> keep 3
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 0, 0, 0],
                         [0, 1, 1, 1, 1, 1, 1, 0, 0]])
    assert padding_columns(mask, 4) == (1, 3)
    assert padding_columns(torch.tensor([[1, 1, 0, 0]]), 2) == (0, 1)  # no response token: one column kept
    assert padding_columns(torch.tensor([[0, 0, 0, 1, 1]]), 3) == (2, 2)  # position P - 1 stays


def widened(tb: TrajectoryBatch, left: int, right: int, pad_id: int) -> TrajectoryBatch:
    """The same trajectories with `left` more all-padding prompt columns and `right` more
    all-padding response columns."""
    def pad(x, value):
        return torch.nn.functional.pad(x, (left, right), value=value)

    def pad_right(x, value):
        return torch.nn.functional.pad(x, (0, right), value=value)

    return TrajectoryBatch(pad(tb.input_ids, pad_id), pad(tb.attention_mask, 0), pad(tb.position_ids, 0),
                           pad_right(tb.response_ids, pad_id), pad_right(tb.mask, False),
                           pad_right(tb.prefix_mask, False), pad_right(tb.engine_logprobs, 0.0))


def test_trimmed_forward_equals_the_full_width_one(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    trajectories = [Trajectory(0, [5, 6, 7], [], [8, 9], None, "stop"),   # prompt, prefix, generated
                    Trajectory(1, [5, 6, 7, 10, 11], [12], [13, 14, 15], None, "stop")]
    tb = pad_trajectories(trajectories, pad_id=0)
    wide = widened(tb, 3, 4, pad_id=0)
    assert padding_columns(wide.attention_mask, wide.prompt_width) == (3, 4)

    def run(batch):
        model.zero_grad()
        logprobs, entropy = response_logprobs(model, batch, 1.0, 1024, True)
        (logprobs * batch.mask).sum().backward()
        return logprobs.detach(), entropy, [p.grad.clone() for p in model.parameters()]

    lp, ent, grads = run(tb)
    lp_wide, ent_wide, grads_wide = run(wide)
    torch.testing.assert_close(lp_wide[:, :4], lp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ent_wide[:, :4], ent, rtol=1e-5, atol=1e-6)
    assert lp_wide[:, 4:].eq(0).all() and ent_wide[:, 4:].eq(0).all()  # left out: 0
    for g, g_wide in zip(grads, grads_wide):
        torch.testing.assert_close(g_wide, g, rtol=1e-4, atol=1e-6)
