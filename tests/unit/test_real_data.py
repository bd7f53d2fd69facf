"""LUFFY's real evaluation parquet (../shared/real/luffy_valid.parquet: nested `prompt` messages,
`reward_model.ground_truth`, `data_source`) through the `openr1` layout, a training file made
from it with a `target` column, and the eval harness's parquet benchmarks. Skipped without
../shared (a fresh clone)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datamodules import PromptDemoDataModule
from datamodules.templates import render_prompt
from eval_harness.benchmarks import benchmark_name, expand_benchmarks, load_benchmark

FIRST_AIME = "Every morning Aya goes for a $9$-kilometer-long walk"


@pytest.fixture(scope="module")
def rows(luffy_valid_parquet):
    return pq.read_table(luffy_valid_parquet).to_pylist()


def demo_for(row) -> str:
    return f"Let me think.\nThe answer is \\boxed{{{row['reward_model']['ground_truth']}}}"


@pytest.fixture(scope="module")
def train_parquet(rows, luffy_valid_parquet, tmp_path_factory):
    """LUFFY's training layout: the evaluation file's columns + `target`, a list holding one
    assistant message (the demonstration), as in OpenR1-Math-46k-8192."""
    table = pq.read_table(luffy_valid_parquet).slice(0, 40)
    target_type = pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))
    targets = pa.array([[{"content": demo_for(r), "role": "assistant"}] for r in rows[:40]], type=target_type)
    path = tmp_path_factory.mktemp("luffy_train") / "train.parquet"
    pq.write_table(table.append_column("target", targets), path)
    return path


def test_file_has_the_nested_layout(luffy_valid_parquet):
    schema = pq.read_schema(luffy_valid_parquet)
    assert pa.types.is_list(schema.field("prompt").type)
    assert pa.types.is_struct(schema.field("reward_model").type)


def test_openr1_layout_reads_every_held_out_row(luffy_valid_parquet, qwen_tokenizer_dir, rows):
    dm = PromptDemoDataModule(str(qwen_tokenizer_dir), val_files=str(luffy_valid_parquet), layout="openr1",
                              template="qwen_math", val_batch_size=256)
    items = [item for batch in dm.val_dataloader() for item in batch.items]
    assert len(items) == len(rows) == 2019 and not dm.val_skipped
    first = items[0]
    user = rows[0]["prompt"][-1]["content"]            # the system turn of the file is dropped
    assert rows[0]["prompt"][0]["role"] == "system" and user.startswith(FIRST_AIME)
    assert dm.tokenizer.decode(first.prompt_ids) == render_prompt(user, "qwen_math")
    assert first.answers == ["204"] and first.demo_ids == []
    amc = next(item for item, row in zip(items, rows) if row["data_source"] == "amc")
    assert amc.answers == ["142.0"]                    # float-looking answers stay strings


def test_training_file_with_target_column_gives_demonstrations(train_parquet, qwen_tokenizer_dir, rows):
    dm = PromptDemoDataModule(str(qwen_tokenizer_dir), train_files=str(train_parquet), layout="openr1",
                              template="qwen_math", batch_size=8, shuffle_buffer=0)
    batch = next(iter(dm.train_dataloader()))
    for item, row in zip(batch.items, rows):
        assert len(item.demo_ids) == 1
        assert dm.tokenizer.decode(item.demo_ids[0]) == demo_for(row) + "<|endoftext|>"
        assert item.answers == [row["reward_model"]["ground_truth"]]
    assert dm.skip_counts() == {"data/skipped": 0}


def test_eval_parquet_is_one_benchmark_per_data_source_repeats_collapsed(luffy_valid_parquet):
    specs = expand_benchmarks([str(luffy_valid_parquet)])
    sizes = {benchmark_name(spec): len(load_benchmark(spec)) for spec in specs}
    # LUFFY's file: aime 240 rows (30 x 8), amc 332 (83 x 4): problems, not rows
    assert sizes == {"aime24": 30, "math500": 500, "olympiadbench": 675, "amc": 83, "minerva": 272}
    aime = load_benchmark(f"{luffy_valid_parquet}#aime")
    assert aime[0].problem.startswith(FIRST_AIME) and aime[0].answers == ["204"]
    assert [p.id for p in aime] == [str(i) for i in range(30)]
    assert expand_benchmarks(specs) == specs  # idempotent (a config is rebuilt in shard processes)


def test_unknown_data_source_is_an_error_naming_the_sources(luffy_valid_parquet):
    with pytest.raises(ValueError, match="no rows with data_source 'gsm8k'.*'aime'"):
        load_benchmark(f"{luffy_valid_parquet}#gsm8k")
