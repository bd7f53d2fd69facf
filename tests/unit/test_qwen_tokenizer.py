"""The data path on the real Qwen2.5 tokenizer (151,643-token BPE, EOS = pad = <|endoftext|>,
chat template) and a tiny random Qwen2 with Qwen2.5's 151,936 embedding rows: templates,
pad = EOS, and a hybrid prefix that ends in the middle of a word."""

from __future__ import annotations

import random

import pytest
import torch

from datamodules.templates import encode_demo, encode_prompt, render_prompt
from prefix_rft_pl.engines.base import SamplingConfig
from prefix_rft_pl.prefix import Trajectory, assemble_trajectories, build_group_requests, pad_trajectories
from prefix_rft_pl.types import GenerationRequest, PromptItem

REFERENCE_PROMPT = (  # what the reference code renders for Qwen2.5-Math (see datamodules/templates.py)
    "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
    "<|im_start|>user\nFind $x$ if $2x = 6$.\nPlease reason step by step, and put your final answer within \\boxed{}"
    "<|im_end|>\n<|im_start|>assistant\n"
)
DEMO = "Dividing both sides by 2 gives an unbelievably simple answer: \\boxed{3}"


@pytest.fixture(scope="module")
def tokenizer(qwen_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir)


@pytest.fixture(scope="module")
def tiny_qwen(tiny_qwen25_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_qwen25_dir, dtype=torch.float32)


def test_tokenizer_has_qwen25_math_special_tokens(tokenizer):
    assert len(tokenizer) == 151_665  # Qwen2.5's; Qwen3's <think> family (151665-151668) dropped
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == 151_643
    assert tokenizer.bos_token is None
    assert tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [151_644, 151_645]


def test_qwen_math_template_renders_the_reference_prompt(tokenizer):
    assert render_prompt("Find $x$ if $2x = 6$.", "qwen_math") == REFERENCE_PROMPT
    # the reference code: apply_chat_template on [user: problem + instruction]
    assert render_prompt("Find $x$ if $2x = 6$.", "chat", tokenizer) == REFERENCE_PROMPT


def test_prompt_ids_have_single_special_tokens_and_round_trip(tokenizer):
    ids = encode_prompt("Find $x$ if $2x = 6$.", "qwen_math", tokenizer)
    assert ids[0] == 151_644 and ids[-3:] == tokenizer("<|im_start|>assistant\n")["input_ids"]
    assert ids.count(151_645) == 2  # two <|im_end|>: system and user turns
    assert tokenizer.decode(ids) == REFERENCE_PROMPT


def test_pad_equal_to_eos_keeps_the_responses_eos_in_the_loss_mask(tokenizer):
    demo = encode_demo(DEMO, tokenizer)
    assert demo[-1] == tokenizer.eos_token_id == tokenizer.pad_token_id
    short = Trajectory(0, [1, 2, 3], [], demo[:4] + [tokenizer.eos_token_id], [0.0] * 5, "stop")
    long = Trajectory(0, [1, 2], [], demo, [0.0] * len(demo), "stop")
    tb = pad_trajectories([short, long], tokenizer.pad_token_id)
    assert tb.response_ids[0, 4] == tokenizer.eos_token_id and tb.mask[0, 4]   # the EOS counts
    assert not tb.mask[0, 5:].any()                                            # padding (same id) does not
    assert tb.response_ids[0, 5:].eq(tokenizer.pad_token_id).all()
    assert tb.mask[1].all() and tb.response_ids[1, -1] == tokenizer.eos_token_id


def test_left_padding_with_eos_does_not_end_generation_early(tokenizer, tiny_qwen):
    from prefix_rft_pl.engines.hf import HFEngine

    engine = HFEngine(tiny_qwen, tokenizer)
    short = encode_prompt("1+1?", "qwen_math", tokenizer)
    long = encode_prompt("What is the sum of all positive divisors of 2024?", "qwen_math", tokenizer)
    greedy = SamplingConfig(temperature=0.0)
    together = engine.generate([GenerationRequest(short, 12), GenerationRequest(long, 12)], greedy)
    alone = engine.generate([GenerationRequest(short, 12)], greedy)
    # the short prompt is left-padded with pad = EOS ids; it still generates its whole budget...
    assert [len(r.token_ids) for r in together] == [12, 12]
    assert all(r.finish_reason == "length" and tokenizer.eos_token_id not in r.token_ids for r in together)
    # ...and the same tokens as without padding
    assert together[0].token_ids == alone[0].token_ids


def mid_word_prefix_length(tokenizer, demo_ids: list[int]) -> int:
    """The last L whose prefix ends inside a word: token L continues token L-1's word
    ("Ġunbelie" | "vably" in DEMO)."""
    tokens = tokenizer.convert_ids_to_tokens(demo_ids)
    for length in reversed(range(1, len(tokens) - 1)):
        word_goes_on = not tokens[length].startswith("Ġ")  # "Ġ" (a space) starts a new word
        if tokens[length - 1].lstrip("Ġ").isalpha() and tokens[length].isalpha() and word_goes_on:
            return length
    raise AssertionError(f"no mid-word cut in {tokens}")


def test_hybrid_prefix_ending_mid_word_is_token_exact(tokenizer, tiny_qwen):
    from prefix_rft_pl.engines.hf import HFEngine

    prompt = encode_prompt("Find $x$ if $2x = 6$.", "qwen_math", tokenizer)
    demo = encode_demo(DEMO, tokenizer)
    length = mid_word_prefix_length(tokenizer, demo)
    prefix_text = tokenizer.decode(demo[:length])
    assert prefix_text.endswith(" unbelie") and DEMO[len(prefix_text):].startswith("vably")  # inside a word
    item = PromptItem("0", prompt, [demo], ["3"])
    ratio = (length + 0.5) / len(demo)  # floor(ratio * |y*|) = length
    requests, owners = build_group_requests([item], 2, 1, [ratio], 32, 0, random.Random(0))
    assert requests[1].prefix_ids == demo[:length]
    rollouts = HFEngine(tiny_qwen, tokenizer).generate(requests, SamplingConfig(temperature=1.0))
    hybrid = assemble_trajectories([item], requests, owners, rollouts)[1]
    assert hybrid.response_ids[:length] == demo[:length] and len(hybrid.generated_ids) > 0
    continuation = tokenizer.decode(hybrid.generated_ids)
    full = tokenizer.decode(hybrid.prompt_ids + hybrid.response_ids)
    assert full == REFERENCE_PROMPT + DEMO[: len(prefix_text)] + continuation
