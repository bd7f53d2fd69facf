"""Shared fixtures: a tiny Qwen2 model and its byte tokenizer written with save_pretrained,
the toy task's jsonl files, and the real parts (a Qwen2.5 tokenizer, SmolLM2, LUFFY's
parquet). Session-scoped: built once per test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one OpenMP thread per process: the trainer, reward workers and vLLM share 2 cores, and
# spinning OpenMP threads of several processes slowed a step down 4x here
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default takes ~90% of RAM


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Path of a randomly initialised tiny Qwen2 model + tokenizer (HF format)."""
    from prefix_rft_pl.toy.model import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def toy_task_files(tmp_path_factory):
    """{split name: jsonl path} of a small toy task (plain {problem, solution, answer} layout)."""
    from prefix_rft_pl.toy.task import build_task

    return build_task(tmp_path_factory.mktemp("toy_task"), num_train=200, num_heldout=20)


# ---------------------------------------------------------------------------- real parts
# Built from PyPI packages the test setup installs (prefix_rft_pl/realparts.py), cached under
# ~/.cache/prefix_rft_pl; tests skip, saying why, where a package is missing.
SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "real"


def _real_part(build):
    try:
        return build()
    except ModuleNotFoundError as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="session")
def qwen_tokenizer_dir():
    """Directory of the Qwen2.5(-Math) tokenizer: EOS = pad = <|endoftext|>, 151,665 tokens."""
    from prefix_rft_pl.realparts import qwen25_math_tokenizer_dir

    return _real_part(qwen25_math_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_qwen25_dir(tmp_path_factory, qwen_tokenizer_dir):
    """A tiny random Qwen2 with Qwen2.5's 151,936 embedding rows and the Qwen tokenizer."""
    from prefix_rft_pl.realparts import save_tiny_qwen25

    return save_tiny_qwen25(tmp_path_factory.mktemp("tiny_qwen25"))


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct as a plain HF directory (converted once from its GGUF)."""
    from prefix_rft_pl.realparts import smollm2_dir

    return _real_part(smollm2_dir)


@pytest.fixture(scope="session")
def luffy_valid_parquet():
    """../shared/real/luffy_valid.parquet (LUFFY's evaluation file); skip without ../shared."""
    path = SHARED_REAL / "luffy_valid.parquet"
    if not path.is_file():
        pytest.skip(f"{path} is absent (a fresh clone has no ../shared)")
    return path
