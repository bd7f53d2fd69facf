"""Shared fixtures: a tiny Qwen2 model and its byte tokenizer written with save_pretrained,
and the toy task's jsonl files. Session-scoped: built once per test run."""

from __future__ import annotations

import os

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
