"""Prompt templates and row layouts of the data module (pure functions, no files)."""

from __future__ import annotations

import pytest

from datamodules.layouts import BadRow, parse_row, resolve_layout
from datamodules.templates import INSTRUCTION, check_template, encode_demo, encode_prompt, render_prompt


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_instruction_is_the_reference_codes_without_a_full_stop():
    assert INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}"


def test_qwen_math_renders_the_reference_codes_prompt():
    # Qwen2.5-Math's default system turn (full stop), then the reference's user turn (none)
    assert render_prompt("1+{1}?", "qwen_math") == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\n1+{1}?\nPlease reason step by step, and put your final answer within \\boxed{}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_llama_plain_toy_and_literal_templates():
    assert render_prompt("x", "llama3.1") == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx\n" + INSTRUCTION
        + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert render_prompt("x", "plain") == "x\n" + INSTRUCTION
    assert render_prompt("12#34", "toy") == "Q: 12#34\nA: "
    assert render_prompt("x", "Problem: {problem}\nSolution:") == "Problem: x\nSolution:"


def test_unknown_template_is_rejected():
    with pytest.raises(ValueError, match="unknown template"):
        check_template("qwen")


def test_chat_template_uses_the_tokenizers_chat_template(tokenizer):
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    text = render_prompt("x", "chat", tokenizer)
    assert text == "<|im_start|>user\nx\n" + INSTRUCTION + "<|im_end|>\n<|im_start|>assistant\n"


def test_prompt_special_tokens_are_single_ids_and_demo_ends_with_eos(tokenizer):
    ids = encode_prompt("1", "qwen_math", tokenizer)
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokenizer.decode(ids) == render_prompt("1", "qwen_math")
    demo = encode_demo("ab \\boxed{2}", tokenizer)
    assert demo[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(demo[:-1]) == "ab \\boxed{2}"
    assert demo.count(tokenizer.eos_token_id) == 1  # no BOS/EOS added by the tokenizer itself


PLAIN = resolve_layout("plain")
OPENR1 = resolve_layout("openr1")


def test_plain_layout():
    ex = parse_row({"problem": "p", "solution": "s", "answer": "7"}, PLAIN, "f:0", require_demos=True)
    assert (ex.uid, ex.problem, ex.demos, ex.answers) == ("f:0", "p", ["s"], ["7"])


def test_openr1_layout_reads_messages_target_and_reward_model():
    row = {
        "prompt": [{"role": "system", "content": "be careful"}, {"role": "user", "content": "What is 2+2?"}],
        "target": [{"role": "assistant", "content": "2+2=4 \\boxed{4}"}],
        "reward_model": {"ground_truth": "4", "style": "rule"},
    }
    ex = parse_row(row, OPENR1, "f:3", require_demos=True)
    assert (ex.problem, ex.demos, ex.answers) == ("What is 2+2?", ["2+2=4 \\boxed{4}"], ["4"])


def test_mapping_with_dotted_paths_several_demos_answers_and_uid():
    mapping = resolve_layout({"problem": "q.text", "demos": "sols", "answer": "gold", "uid": "id"})
    row = {"q": {"text": "p"}, "sols": ["a", "b"], "gold": ["\\boxed{\\frac{1}{2}}", "0.5"], "id": 17}
    ex = parse_row(row, mapping, "f:0", require_demos=True)
    assert (ex.uid, ex.demos, ex.answers) == ("17", ["a", "b"], ["\\frac{1}{2}", "0.5"])


def test_zero_padded_answer_stays_a_string():
    ex = parse_row({"problem": "p", "solution": "s", "answer": "025"}, PLAIN, "f:0", require_demos=True)
    assert ex.answers == ["025"]


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"solution": "s", "answer": "1"}, "missing_field"),
        ({"problem": None, "solution": "s", "answer": "1"}, "missing_field"),
        ({"problem": "  ", "solution": "s", "answer": "1"}, "empty_field"),
        ({"problem": "p", "solution": "", "answer": "1"}, "empty_field"),
        ({"problem": "p", "solution": [], "answer": "1"}, "empty_field"),
        ({"problem": 3, "solution": "s", "answer": "1"}, "non_string_field"),
        ({"problem": "p", "solution": "s", "answer": 5}, "non_string_field"),
        ({"problem": "p", "solution": "s", "answer": "\\boxed{}"}, "bad_answer"),
        ({"problem": "p", "solution": "s", "answer": "\\boxed{12"}, "bad_answer"),
        ({"problem": "p", "solution": "s", "answer": "$ $"}, "bad_answer"),
        ([1, 2], "not_an_object"),
    ],
)
def test_bad_rows_raise_with_their_reason(row, reason):
    with pytest.raises(BadRow) as err:
        parse_row(row, PLAIN, "f:0", require_demos=True)
    assert err.value.reason == reason


def test_held_out_rows_may_lack_demonstrations():
    ex = parse_row({"problem": "p", "answer": "1"}, PLAIN, "f:0", require_demos=False)
    assert ex.demos == []
    with pytest.raises(BadRow, match="missing_field"):
        parse_row({"problem": "p", "answer": "1"}, PLAIN, "f:0", require_demos=True)


def test_layout_errors():
    with pytest.raises(ValueError, match="unknown layout"):
        resolve_layout("luffy")
    with pytest.raises(ValueError, match="missing"):
        resolve_layout({"problem": "q"})
