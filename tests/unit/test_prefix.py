"""Prefix lengths, hybrid requests and entropy-based selection, by hand."""

import random

import pytest
import torch

from prefix_rft_pl.prefix import (
    assemble_trajectories,
    build_group_requests,
    num_kept,
    pad_trajectories,
    prefix_length,
    select_prefix_tokens,
)
from prefix_rft_pl.types import PromptItem, Rollout


@pytest.mark.parametrize(
    "ratio, demo_len, min_tokens, expected",
    [
        (0.5, 10, 0, 5),     # floor(5.0)
        (0.55, 10, 0, 5),    # floor(5.5)
        (0.95, 10, 0, 9),    # floor(9.5) = 9 = |y*| - 1
        (0.999, 10, 0, 9),   # floor(9.99) = 9, clamp keeps one token to generate
        (0.05, 10, 0, 0),    # floor(0.5) = 0
        (0.05, 10, 3, 3),    # raised to min_prefix_tokens
        (0.5, 4, 8, 3),      # min above |y*| - 1: clamped down to 3
        (1.0, 10, 0, 10),    # ratio 1: the whole demonstration (LUFFY, SFT)
    ],
)
def test_prefix_length_clamping(ratio, demo_len, min_tokens, expected):
    assert prefix_length(ratio, demo_len, min_tokens) == expected


def test_hybrid_prefix_ids_equal_the_demonstrations_first_L_ids():
    demo = [11, 12, 13, 14, 15, 16, 17, 18, 19, 1]
    item = PromptItem("p0", [5, 6, 7], [demo], ["42"])
    requests, owners = build_group_requests([item], group_size=4, num_hybrid=1, prefix_ratios=[0.5],
                                            max_response_tokens=20, min_prefix_tokens=0, rng=random.Random(0))
    ordinary, hybrid = requests
    assert ordinary.num_samples == 3 and ordinary.prefix_ids == [] and ordinary.max_new_tokens == 20
    assert hybrid.prefix_ids == demo[:5] and hybrid.prompt_ids == [5, 6, 7]
    assert hybrid.max_new_tokens == 20 - 5  # budget reduced by the prefix length
    rollouts = [Rollout([1], [-0.1], "stop")] * 3 + [Rollout([21, 1], [-0.2, -0.3], "stop")]
    trajectories = assemble_trajectories([item], requests, owners, rollouts)
    assert [t.is_hybrid for t in trajectories] == [False, False, False, True]
    assert trajectories[3].response_ids == demo[:5] + [21, 1]
    tb = pad_trajectories(trajectories, pad_id=0)
    assert tb.response_ids[3, :5].tolist() == demo[:5]
    assert tb.prefix_mask[3].tolist() == [True] * 5 + [False] * 2
    assert tb.generated_mask[3].tolist() == [False] * 5 + [True] * 2
    assert tb.engine_logprobs[3, 5:7].tolist() == pytest.approx([-0.2, -0.3])
    assert tb.engine_logprobs[3, :5].tolist() == [0.0] * 5  # no engine log-probs on prefix tokens
    # responses start at the same column; the prompt is left-padded
    assert tb.input_ids[3, tb.prompt_width:].tolist() == demo[:5] + [21, 1]


def test_pad_trajectories_positions_skip_left_padding():
    items = [PromptItem("a", [5], [[9, 1]], ["1"]), PromptItem("b", [5, 6, 7], [[9, 1]], ["1"])]
    requests, owners = build_group_requests(items, 1, 0, [], 4, 0, random.Random(0))
    tb = pad_trajectories(assemble_trajectories(items, requests, owners, [Rollout([3, 1], None), Rollout([4], None)]),
                          0)
    assert tb.input_ids.tolist() == [[0, 0, 5, 3, 1], [5, 6, 7, 4, 0]]
    assert tb.position_ids[0, 2:4].tolist() == [0, 1] and tb.position_ids[1, :4].tolist() == [0, 1, 2, 3]
    assert tb.mask.tolist() == [[True, True], [True, False]]


# entropy selection ---------------------------------------------------------------
ENTROPY = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.0], [0.3, 0.8, 0.2, 0.6, 0.4]])
PREFIX = torch.tensor([[True, True, True, True, False], [True, True, True, False, False]])
# prefix entropies: 0.9 0.1 0.5 0.7 | 0.3 0.8 0.2 -> 7 prefix tokens


def test_num_kept_rounds():
    assert num_kept(7, 0.2) == 1 and num_kept(10, 0.2) == 2 and num_kept(10, 0.25) == 2 and num_kept(3, 1.0) == 3


def test_top_k_over_the_whole_batch():
    # k = 0.3 of 7 -> round(2.1) = 2 tokens: 0.9 (row 0) and 0.8 (row 1)
    kept = select_prefix_tokens(ENTROPY, PREFIX, 0.3, "top")
    assert kept.nonzero().tolist() == [[0, 0], [1, 1]]


def test_bottom_k():
    kept = select_prefix_tokens(ENTROPY, PREFIX, 0.3, "bottom")
    assert kept.nonzero().tolist() == [[0, 1], [1, 2]]  # 0.1 and 0.2


def test_generated_tokens_never_selected_even_with_top_entropy():
    entropy = ENTROPY.clone()
    entropy[0, 4] = 99.0  # generated token
    assert not select_prefix_tokens(entropy, PREFIX, 1.0, "top")[0, 4]


def test_ties_broken_by_position():
    entropy = torch.full((2, 3), 0.5)
    prefix = torch.ones(2, 3, dtype=torch.bool)
    kept = select_prefix_tokens(entropy, prefix, 0.5, "top")  # 3 of 6, all tied -> the first three
    assert kept.tolist() == [[True, True, True], [False, False, False]]


def test_no_prefix_tokens_keeps_nothing():
    assert not select_prefix_tokens(ENTROPY, torch.zeros_like(PREFIX), 0.2, "top").any()


def test_k_100_percent_keeps_every_prefix_token():
    assert torch.equal(select_prefix_tokens(ENTROPY, PREFIX, 1.0, "top"), PREFIX)


def test_none_keeps_all_and_freeze_keeps_none():
    assert torch.equal(select_prefix_tokens(ENTROPY, PREFIX, 0.2, "none"), PREFIX)
    assert not select_prefix_tokens(ENTROPY, PREFIX, 0.2, "freeze").any()


def test_random_k_is_seeded_and_within_prefix():
    a = select_prefix_tokens(ENTROPY, PREFIX, 0.5, "random", torch.Generator().manual_seed(1))
    b = select_prefix_tokens(ENTROPY, PREFIX, 0.5, "random", torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and int(a.sum()) == 4 and not (a & ~PREFIX).any()


def test_selection_is_the_same_for_any_split_of_the_batch():
    # two ranks holding 3 and 5 rows: each gathers every rank's rows (padded to equal shapes for
    # the collective, unpadded after), selects over the whole batch and keeps its own rows; the
    # result equals one rank selecting over all 8 rows. Selecting within each rank's rows (the
    # reference code's per-micro-batch ranking) keeps another set.
    from prefix_rft_pl.distributed import gather_rows

    torch.manual_seed(0)
    entropy = torch.rand(8, 6)
    entropy[:3] += 1.0  # rank 0's rows are the uncertain ones: a whole-batch top-k keeps only them
    prefix = torch.rand(8, 6) > 0.5
    full = select_prefix_tokens(entropy, prefix, 0.2, "top")
    counts = torch.tensor([3, 5])
    bounds = [slice(0, 3), slice(3, 8)]

    def fake_all_gather(source):  # what each rank contributes, padded to 5 rows
        def gather(padded):
            parts = [torch.cat([source[b], source.new_zeros(5 - (b.stop - b.start), 6)]) for b in bounds]
            return torch.stack(parts)                                          # [W, 5, 6]
        return gather

    per_rank = []
    for _rank, rows in enumerate(bounds):
        ent = gather_rows(fake_all_gather(entropy), entropy[rows], counts, "cpu")
        pm = gather_rows(fake_all_gather(prefix), prefix[rows], counts, "cpu")
        assert torch.equal(ent, entropy) and torch.equal(pm, prefix)  # rank order, padding dropped
        per_rank.append(select_prefix_tokens(ent, pm, 0.2, "top")[rows])
    assert torch.equal(torch.cat(per_rank), full)
    local = torch.cat([select_prefix_tokens(entropy[r], prefix[r], 0.2, "top") for r in bounds])
    assert not torch.equal(local, full)
    assert int(full.sum()) == num_kept(int(prefix.sum()), 0.2)
    threshold = entropy[full].min()
    assert (entropy[prefix & ~full] <= threshold).all()


def test_a_demonstration_over_the_budget_is_refused_never_cut():
    items = [PromptItem("row7", [5], [[9] * 12], ["1"])]
    with pytest.raises(ValueError, match=r"prompt row7: a demonstration of 12 tokens exceeds model.rollout.max_resp"):
        build_group_requests(items, 2, 1, [0.5], 10, 0, random.Random(0))
    requests, _ = build_group_requests(items, 2, 1, [0.5], 12, 0, random.Random(0))  # at the budget: kept whole
    assert len(requests[1].prefix_ids) == 6
