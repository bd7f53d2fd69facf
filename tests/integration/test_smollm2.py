"""A real pretrained LM (SmolLM2-135M-Instruct: 49,152-token BPE, EOS = pad = <|im_end|>, chat
template, a peaked distribution) through one Prefix-RFT step with each engine and through the
eval harness. Training data: a parquet in LUFFY's training layout (from its real evaluation
file when ../shared is there) whose `target` demonstrations are assistant turns of the model's
chat format (content, then <|im_end|>), plus one bad row, whose skip must show in the metrics
of the very first step."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "benchmarks"
LUFFY = Path(__file__).resolve().parents[3] / "shared" / "real" / "luffy_valid.parquet"
FLOAT32_TOLERANCE = 1e-3  # max |engine - trainer| on generated tokens, float32 both sides
ENGINES = {
    "hf": {},
    "vllm": {"dtype": "float32", "max_model_len": 1024, "kv_cache_gib": 1, "enforce_eager": True},
}


TARGET = pa.field("target", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())])))
BUILT_IN = [("What is $12 + 30$?", "42"), ("Compute $7 \\times 8$.", "56")]  # without ../shared


def verl_rows(luffy: Path) -> tuple[list[dict], pa.Schema | None]:
    """The two shortest MATH-500 problems of LUFFY's file, or two built-in ones in its layout."""
    if luffy.is_file():
        rows = [r for r in pq.read_table(luffy).to_pylist() if r["data_source"] == "math"]
        return sorted(rows, key=lambda r: len(r["prompt"][-1]["content"]))[:2], pq.read_schema(luffy)
    rows = [{"data_source": "math", "prompt": [{"content": "Solve it.", "role": "system"},
                                               {"content": problem, "role": "user"}],
             "ability": "math", "reward_model": {"ground_truth": answer, "style": "rule"}}
            for problem, answer in BUILT_IN]
    return rows, None


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    """One bad row (no ground truth), then two problems, each with one demonstration in the
    `target` column: LUFFY's training layout, built from its evaluation file when ../shared is there."""
    rows, schema = verl_rows(LUFFY)
    for r in rows:
        answer = r["reward_model"]["ground_truth"]
        r["target"] = [{"content": f"Let me solve it step by step.\nThe answer is $\\boxed{{{answer}}}$.",
                        "role": "assistant"}]
    bad = json.loads(json.dumps(rows[0]))
    bad["reward_model"]["ground_truth"] = None
    path = tmp_path_factory.mktemp("smollm2_data") / "train.parquet"
    table = pa.Table.from_pylist([bad, *rows], schema=None if schema is None else schema.append(TARGET))
    pq.write_table(table, path)
    return path


def fit(tmp_path, model_dir, train_file, engine: str, steps: int):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from callbacks import PrefixSchedule, VLLMWeightSync
    from datamodules import PromptDemoDataModule
    from tests.helpers import build_module

    module = build_module(str(model_dir), {"rollout": {"group_size": 4, "num_hybrid": 1, "max_response_tokens": 32},
                                           "engine": {"kind": engine, **ENGINES[engine]}, "optim": {"lr": 1e-5},
                                           "reward": {"workers": 1}, "update": {"micro_batch_size": 4}})
    data = PromptDemoDataModule(str(model_dir), train_files=str(train_file), layout="openr1", template="chat",
                                batch_size=2, shuffle_buffer=0)
    # whole demonstrations as the hybrids (they hold the right answer): non-zero advantages
    callbacks = [PrefixSchedule(kind="constant", low_start=1.0, high=1.0)]
    if engine == "vllm":
        callbacks.append(VLLMWeightSync())
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=CSVLogger(str(tmp_path)),
                        callbacks=callbacks, log_every_n_steps=1, limit_val_batches=0, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    try:
        trainer.fit(module, datamodule=data)
    finally:
        if module.engine is not None and hasattr(module.engine, "close"):
            module.engine.close()
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        return trainer, [row for row in csv.DictReader(f) if row.get("train/loss")]


def check_step_rows(rows, steps: int):
    assert len(rows) == steps
    for row in rows:
        assert float(row["rollout/logprob_diff_max"]) < FLOAT32_TOLERANCE
        # the bad row is met again in every data epoch (3 rows, 2 per batch, plus prefetching)
        assert float(row["data/skipped"]) == float(row["data/skipped_missing_field"]) >= 1
    assert max(float(row["train/grad_norm"]) for row in rows) > 0


def test_prefix_rft_step_with_the_hf_engine(tmp_path, smollm2_dir, train_file):
    trainer, rows = fit(tmp_path, smollm2_dir, train_file, "hf", steps=1)
    assert trainer.global_step == 1
    check_step_rows(rows, 1)


@pytest.mark.vllm
def test_prefix_rft_steps_with_the_vllm_engine_stay_in_sync(tmp_path, smollm2_dir, train_file):
    pytest.importorskip("vllm")
    # step 2 samples from weights pushed after step 1's update: the check would stop a stale engine
    trainer, rows = fit(tmp_path, smollm2_dir, train_file, "vllm", steps=2)
    assert trainer.global_step == 2
    check_step_rows(rows, 2)


@pytest.mark.benchmarks
def test_eval_harness_on_the_six_benchmarks(tmp_path, smollm2_dir):
    if not BENCHMARKS.is_dir():
        pytest.skip(f"{BENCHMARKS} is absent (a fresh clone has no ../shared)")
    from eval_harness.config import PAPER_BENCHMARKS, EvalConfig
    from eval_harness.runner import run
    from prefix_rft_pl.config import Engine

    cfg = EvalConfig(ckpt=str(smollm2_dir), data_dir=str(BENCHMARKS), out=str(tmp_path),
                     engine=Engine(kind="hf", device="cpu"), template="chat", max_new_tokens=24, num_samples={},
                     limit=3, grading_workers=1, chunk_size=18)
    results = run(cfg)
    assert sorted(results["benchmarks"]) == sorted(PAPER_BENCHMARKS)
    for name in PAPER_BENCHMARKS:
        samples = (tmp_path / f"samples_{name}.jsonl").read_text().splitlines()
        assert len(samples) == 3 and results["benchmarks"][name]["num_problems"] == 3
        assert all(json.loads(s)["num_tokens"] > 0 for s in samples)
    assert (tmp_path / "results.json").is_file() and (tmp_path / "results.md").is_file()
    assert (tmp_path / "pass_at_k.png").stat().st_size > 0
