"""Prompt rendering: a problem text -> the prompt string the policy sees.

Named templates put the paper's instruction in the user turn (SPEC section 2 defaults):
    user turn = problem + "\\nPlease reason step by step, and put your final answer within \\boxed{}"
with no full stop after \\boxed{}, as in the reference code (ZeroYuHuang/prefix_rft,
recipe/prepare_data/luffy_train.py and luffy_test.py: the user message is the problem + that
instruction, and the system message of LUFFY's files is dropped).
- "qwen_math": what the reference code feeds Qwen2.5-Math: that single user message rendered by
  `apply_chat_template(..., add_generation_prompt=True)` with Qwen2.5-Math's chat template, which
  writes its own default system turn when the conversation has none:
      <|im_start|>system\\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\\n
      <|im_start|>user\\n{problem}\\nPlease reason step by step, and put your final answer within \\boxed{}<|im_end|>\\n
      <|im_start|>assistant\\n
  (the system turn's instruction has a full stop, the user turn's has none: both verbatim).
  Earlier versions of this template wrote Qwen2.5-Instruct's "You are a helpful assistant."
  system turn and a full stop in the user turn; neither is what the reference trained on.
- "llama3.1": LLaMA-3.1 header format, BOS included, no system turn (the official chat
  template would add a "Cutting Knowledge Date" system turn; the paper does not say it used it).
- "chat": `tokenizer.apply_chat_template` with the same single user turn (for Qwen2.5-Math's
  tokenizer this is exactly "qwen_math").
- "plain": problem + instruction, no chat markup.
- "toy": the toy task's `Q: {problem}\\nA: ` (no instruction).
Any other string containing "{problem}" is used as a literal template.
"""

from __future__ import annotations

from typing import Any

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}"  # no full stop (reference code)
USER_TURN = "{problem}\n" + INSTRUCTION

TEMPLATES = {
    "toy": "Q: {problem}\nA: ",
    "plain": USER_TURN,
    "qwen_math": (
        # Qwen2.5-Math's chat template's default system turn (it has the full stop)
        "<|im_start|>system\n" + INSTRUCTION + ".<|im_end|>\n"
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
