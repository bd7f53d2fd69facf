"""Prompt rendering: a problem text -> the prompt string the policy sees.

Named templates put the paper's instruction in the user turn (SPEC section 2 defaults):
    user turn = problem + "\\nPlease reason step by step, and put your final answer within \\boxed{}."
- "qwen_math": Qwen's ChatML with its default system turn ("You are a helpful assistant.").
  Qwen2.5-Math's own evaluation scripts put the instruction in the *system* turn instead;
  the paper (and this template) put it after the problem in the user turn.
- "llama3.1": LLaMA-3.1 header format, BOS included, no system turn (the official chat
  template would add a "Cutting Knowledge Date" system turn; the paper does not say it used it).
- "chat": `tokenizer.apply_chat_template` with the same single user turn.
- "plain": problem + instruction, no chat markup.
- "toy": the toy task's `Q: {problem}\\nA: ` (no instruction).
Any other string containing "{problem}" is used as a literal template.
"""

from __future__ import annotations

from typing import Any

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
USER_TURN = "{problem}\n" + INSTRUCTION

TEMPLATES = {
    "toy": "Q: {problem}\nA: ",
    "plain": USER_TURN,
    "qwen_math": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n" + USER_TURN + "<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "llama3.1": (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        + USER_TURN
        + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
}


def check_template(template: str) -> None:
    """Raise ValueError early (at construction) for an unknown template name."""
    if template != "chat" and template not in TEMPLATES and "{problem}" not in template:
        names = sorted([*TEMPLATES, "chat"])
        raise ValueError(f"unknown template {template!r}: use one of {names} or a string with '{{problem}}'")


def render_prompt(problem: str, template: str, tokenizer: Any = None) -> str:
    """The prompt text for `problem` (special tokens written as text, e.g. `<|im_start|>`).

    `template`: a name above, "chat" (needs `tokenizer` with a chat template), or a literal
    string containing "{problem}". Substitution is plain replacement, so braces in the
    problem (LaTeX) are safe.
    """
    if template == "chat":
        messages = [{"role": "user", "content": USER_TURN.replace("{problem}", problem)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return TEMPLATES.get(template, template).replace("{problem}", problem)


def encode_prompt(problem: str, template: str, tokenizer: Any) -> list[int]:
    """Token ids of the rendered prompt. Special tokens come from the template text, so the
    tokenizer adds none of its own (no second BOS)."""
    text = render_prompt(problem, template, tokenizer)
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def encode_demo(demo: str, tokenizer: Any) -> list[int]:
    """Token ids of a demonstration, tokenised once without special tokens, EOS appended."""
    # verbose=False: long demonstrations are expected, not a model_max_length mistake
    return tokenizer(demo, add_special_tokens=False, verbose=False)["input_ids"] + [tokenizer.eos_token_id]
