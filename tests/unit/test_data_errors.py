"""Bad inputs fail before any row is streamed, naming the file, the field and what was found:
empty files, columns other than the layout's, local paths that do not exist."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from datamodules import PromptDemoDataModule
from datamodules.checks import ColumnsError, EmptyDataError
from datamodules.sources import Source, resolve_sources

ROWS = [{"problem": f"p{i}", "solution": f"s{i}", "answer": str(i)} for i in range(8)]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def module(tokenizer, files, **kwargs):
    return PromptDemoDataModule(str(tokenizer), train_files=files, template="toy", batch_size=4, **kwargs)


# ------------------------------------------------------------------ empty files
def test_an_empty_file_is_named_and_called_empty(tiny_model_dir, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n")
    with pytest.raises(EmptyDataError, match=rf"train_files='{path}': no rows: {path} is empty"):
        module(tiny_model_dir, str(path)).train_dataloader()


def test_a_glob_of_empty_files_names_the_pattern_and_each_file(tiny_model_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text("")
    pq.write_table(pa.Table.from_pylist([], schema=pa.schema([("problem", pa.string())])), tmp_path / "b.parquet")
    pattern = str(tmp_path / "*.*")
    with pytest.raises(EmptyDataError) as err:
        module(tiny_model_dir, pattern).train_dataloader()
    assert str(err.value) == f"train_files='{pattern}': no rows: {tmp_path}/a.jsonl, {tmp_path}/b.parquet are empty"


def test_an_empty_file_among_others_is_warned_about_and_passed_over(tiny_model_dir, tmp_path, caplog):
    (tmp_path / "a.jsonl").write_text("")
    write_jsonl(tmp_path / "b.jsonl", ROWS)
    with caplog.at_level("WARNING", logger="datamodules"):
        batch = next(iter(module(tiny_model_dir, str(tmp_path / "*.jsonl")).train_dataloader()))
    assert len(batch) == 4 and f"{tmp_path}/a.jsonl is empty" in caplog.text


def test_fewer_rows_than_ranks_names_the_file(tiny_model_dir, tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", ROWS[:1])
    dm = module(tiny_model_dir, path)
    dm.trainer = SimpleNamespace(global_rank=1, world_size=2)
    with pytest.raises(ValueError, match=rf"rank 1 of 2 has no rows in epoch 0: {path} holds fewer rows than there"):
        next(iter(dm.train_dataloader()))


def test_a_glob_or_directory_without_data_files_names_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/\*\.jsonl: the glob matches no file"):
        resolve_sources(str(tmp_path / "*.jsonl"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "README.md").write_text("notes\n")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/data: the directory holds no data file \(\*\.jsonl"):
        resolve_sources(str(tmp_path / "data"))


# ------------------------------------------------------------------ columns
def test_jsonl_with_other_columns_names_expected_and_found_once(tiny_model_dir, tmp_path, caplog):
    path = write_jsonl(tmp_path / "t.jsonl", [{"question": "q", "response": "r", "final": "1"}] * 8)
    dm = module(tiny_model_dir, path)
    with caplog.at_level("WARNING", logger="datamodules"), pytest.raises(ColumnsError) as err:
        dm.train_dataloader()  # before any row is streamed
    message = str(err.value)
    assert message.startswith(f"{path}: the layout 'plain' reads {{'problem': 'problem', 'answer': 'answer', "
                              f"'demos': 'solution'}} (role: field)")
    assert "the file has columns ['final', 'question', 'response'] (in its first 64 rows)" in message
    assert "missing: {'problem': 'problem', 'answer': 'answer', 'demos': 'solution'}" in message
    assert "data.init_args.layout: {problem: <field>, demos: <field>, answer: <field>}" in message
    assert "skipping rows" not in caplog.text  # no warning per row


def test_parquet_without_a_nested_field_names_it(tiny_model_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": [{"role": "user", "content": f"p{i}"}], "target": [{"role": "assistant", "content": "s"}],
             "reward_model": {"answer": str(i)}} for i in range(4)]
    path = tmp_path / "openr1.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(ColumnsError) as err:
        module(tiny_model_dir, str(path), layout="openr1").train_dataloader()
    message = str(err.value)
    assert message.startswith(f"{path}: the layout 'openr1' reads")
    assert "the file has columns ['prompt', 'reward_model', 'target']" in message
    assert "missing: {'answer': 'reward_model.ground_truth'}" in message


def test_a_field_some_rows_have_is_not_a_column_error(tiny_model_dir, tmp_path):
    """Rows of several shapes in one JSON lines file are counted row by row, as before."""
    rows = [{"solution": "s", "answer": "1"}] + ROWS
    dm = module(tiny_model_dir, write_jsonl(tmp_path / "t.jsonl", rows), shuffle_buffer=0)
    next(iter(dm.train_dataloader()))
    assert dm.skip_counts()["data/skipped_missing_field"] == 1


def test_held_out_files_need_no_demonstration_column(tiny_model_dir, tmp_path):
    val = write_jsonl(tmp_path / "v.jsonl", [{"problem": "q", "answer": "1"}] * 3)
    dm = module(tiny_model_dir, write_jsonl(tmp_path / "t.jsonl", ROWS), val_files=val)
    assert sum(len(b) for b in dm.val_dataloader()) == 3


# ------------------------------------------------------------------ local paths vs hub ids
@pytest.mark.parametrize("spec", ["data/train", "./foo", "foo.jsonl", "data/train.parquet?split=train",
                                  "~/no_such_dir_here/train", "/no/such/dir"])
def test_a_missing_local_path_is_an_error_not_a_hub_lookup(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()  # `data/train`: its first component exists, so it is local
    with pytest.raises(FileNotFoundError) as err:
        resolve_sources(spec)
    assert str(err.value).startswith(f"{spec}: no such file or directory (read as a local path")
    assert "org/name?split=train" in str(err.value)


def test_hub_ids_stay_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_sources("org/name?config=c&split=test") == [Source("hub", "org/name", "c", "test")]
    assert resolve_sources("AI-MO/NuminaMath-1.5") == [Source("hub", "AI-MO/NuminaMath-1.5")]
    (tmp_path / "org").mkdir()
    with pytest.raises(FileNotFoundError, match="org/name: no such file or directory"):
        resolve_sources("org/name")


def test_home_relative_paths_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_jsonl(tmp_path / "t.jsonl", ROWS)
    assert resolve_sources("~/t.jsonl") == [Source("jsonl", f"{tmp_path}/t.jsonl")]
