"""The eval harness checks prompt + budget against the model's context before any generation:
LUFFY's real AIME prompts, byte-tokenised, do not fit the toy model's 512 positions."""

from __future__ import annotations

import json

import pytest

from eval_harness.config import EvalConfig
from eval_harness.runner import run
from prefix_rft_pl.config import Engine
from prefix_rft_pl.context import PromptTooLongError


def config(model_dir, parquet, out, **kwargs) -> EvalConfig:
    return EvalConfig(ckpt=str(model_dir), benchmarks=[str(parquet)], out=str(out),
                      engine=Engine(kind="hf", device="cpu"), template="plain", max_new_tokens=200, num_samples={},
                      limit=4, grading_workers=1, **kwargs)


def test_long_prompts_stop_the_run_before_generation_naming_benchmark_and_problem(
        tiny_model_dir, luffy_valid_parquet, tmp_path, monkeypatch):
    import eval_harness.runner

    def no_engine(*args, **kwargs):
        raise AssertionError("an engine was built before the prompts were checked")

    monkeypatch.setattr(eval_harness.runner, "build_engine", no_engine)
    with pytest.raises(PromptTooLongError, match=r"budget 200 > context 512: aime24 problem 0 \(\d+ tokens\)"):
        run(config(tiny_model_dir, luffy_valid_parquet, tmp_path))
    assert not list(tmp_path.glob("samples_*.jsonl"))
    assert not (tmp_path / "protocol.json").exists()   # the corrected rerun into this --out is not refused


def test_long_prompts_are_skipped_and_counted_when_asked(tiny_model_dir, luffy_valid_parquet, tmp_path):
    results = run(config(tiny_model_dir, luffy_valid_parquet, tmp_path, skip_long_prompts=True))
    benchmarks = results["benchmarks"]
    assert sorted(benchmarks) == ["aime24", "amc", "math500", "minerva", "olympiadbench"]
    assert all(m["num_problems"] == 4 for m in benchmarks.values())
    aime = benchmarks["aime24"]["grading"]
    assert aime.get("prompt_too_long", 0) >= 1  # AIME problems are long; counted, not generated
    samples = [json.loads(line) for line in (tmp_path / "samples_aime24.jsonl").read_text().splitlines()]
    skipped = [s for s in samples if s["status"] == "prompt_too_long"]
    assert skipped and all(s["num_tokens"] == 0 and not s["correct"] for s in skipped)
    assert len(samples) == 4
