"""Every source kind and layout through the data module, on small files written here."""

from __future__ import annotations

import json

import pytest

from datamodules import PromptDemoDataModule
from datamodules.sources import MalformedFileError, resolve_sources


@pytest.fixture(scope="module", autouse=True)
def _datasets_imported():
    """Pay the one-off `import datasets` in setup, so test timings show the module's own cost."""
    import datasets  # noqa: F401


ROWS = [{"problem": f"p{i}", "solution": f"s{i} \\boxed{{{i}}}", "answer": str(i)} for i in range(12)]


def openr1_row(i: int) -> dict:
    return {
        "prompt": [{"role": "system", "content": "sys"}, {"role": "user", "content": f"p{i}"}],
        "target": [{"role": "assistant", "content": f"s{i} \\boxed{{{i}}}"}],
        "reward_model": {"ground_truth": str(i), "style": "rule"},
    }


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def module(tokenizer, files, **kwargs):
    kwargs = {"template": "toy", "batch_size": 4, "shuffle_buffer": 0, **kwargs}
    return PromptDemoDataModule(str(tokenizer), train_files=files, **kwargs)


def first_epoch(dm, num_rows):
    """The items of the first `num_rows // batch_size` batches."""
    batches = iter(dm.train_dataloader())
    return [item for _ in range(num_rows // dm.hparams.batch_size) for item in next(batches).items]


def check_items(dm, items, num_rows=12):
    tok = dm.tokenizer
    assert sorted(tok.decode(i.prompt_ids) for i in items) == sorted(f"Q: p{i}\nA: " for i in range(num_rows))
    for item in items:
        n = int(item.answers[0])
        assert item.demo_ids == [tok(f"s{n} \\boxed{{{n}}}")["input_ids"] + [tok.eos_token_id]]


def test_jsonl_file(tiny_model_dir, tmp_path):
    dm = module(tiny_model_dir, write_jsonl(tmp_path / "t.jsonl", ROWS))
    items = first_epoch(dm, 12)
    check_items(dm, items)
    assert items[0].uid == f"{tmp_path}/t.jsonl:0"  # shuffle_buffer=0: file order


def test_json_array_json_lines_and_globs(tiny_model_dir, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(ROWS[:5]))
    write_jsonl(tmp_path / "b.json", ROWS[5:9])
    write_jsonl(tmp_path / "c.jsonl", ROWS[9:])
    assert [s.kind for s in resolve_sources(str(tmp_path / "*.json*"))] == ["json_array", "jsonl", "jsonl"]
    check_items(*(lambda dm: (dm, first_epoch(dm, 12)))(module(tiny_model_dir, str(tmp_path / "*.json*"))))


def test_parquet_with_openr1_layout(tiny_model_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([openr1_row(i) for i in range(12)]), tmp_path / "openr1.parquet")
    dm = module(tiny_model_dir, [str(tmp_path / "openr1.parquet")], layout="openr1")
    check_items(dm, first_epoch(dm, 12))


def test_save_to_disk_dataset_with_split(tiny_model_dir, tmp_path):
    import datasets

    splits = {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:2])}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "saved"))
    dm = module(tiny_model_dir, str(tmp_path / "saved"), val_files=f"{tmp_path}/saved?split=test")
    items = first_epoch(dm, 12)
    check_items(dm, items)
    assert items[0].uid == f"{tmp_path}/saved[train]:0"
    assert [len(b) for b in dm.val_dataloader()] == [2]


def test_hub_style_repository_with_config_and_split(tiny_model_dir, tmp_path):
    """A local repository laid out like a hub dataset goes through load_dataset(id, config, split)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = tmp_path / "org_math"
    for config, rows in (("easy", ROWS), ("hard", ROWS[:4])):
        for split in ("train", "test"):
            (repo / config).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), repo / config / f"{split}-00000-of-00001.parquet")
    (repo / "README.md").write_text(
        "---\nconfigs:\n"
        + "".join(
            f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train-*.parquet\n"
            f"  - split: test\n    path: {c}/test-*.parquet\n"
            for c in ("easy", "hard")
        )
        + "---\n"
    )
    dm = module(tiny_model_dir, f"{repo}?config=easy&split=train", val_files=f"{repo}?config=hard&split=test")
    check_items(dm, first_epoch(dm, 12))
    assert sum(len(b) for b in dm.val_dataloader()) == 4


def test_unknown_source_options_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="unknown options"):
        resolve_sources("org/name?splt=train")
    with pytest.raises(FileNotFoundError):
        resolve_sources(str(tmp_path / "missing.jsonl"))
    with pytest.raises(FileNotFoundError):
        resolve_sources(str(tmp_path / "*.parquet"))


def test_malformed_json_line_names_file_and_line(tiny_model_dir, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + '{"problem": "p", oops\n' + json.dumps(ROWS[1]) + "\n")
    dm = module(tiny_model_dir, str(path))
    with pytest.raises(MalformedFileError, match=rf"{path} line 3: malformed JSON"):
        next(iter(dm.train_dataloader()))


def test_held_out_batches_without_demonstrations(tiny_model_dir, tmp_path):
    val = write_jsonl(tmp_path / "v.jsonl", [{"problem": f"q{i}", "answer": str(i)} for i in range(5)])
    dm = module(tiny_model_dir, write_jsonl(tmp_path / "t.jsonl", ROWS), val_files=val, val_batch_size=2)
    batches = list(dm.val_dataloader())
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(item.demo_ids == [] for b in batches for item in b.items)
    assert [i.answers for b in batches for i in b.items] == [[str(i)] for i in range(5)]


@pytest.mark.slow
def test_parquet_in_worker_processes_gives_the_same_stream(tiny_model_dir, tmp_path):
    """datasets shards a stream across DataLoader workers by itself; here every worker must see all rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for part in range(2):
        pq.write_table(pa.Table.from_pylist(ROWS[6 * part:6 * part + 6]), tmp_path / f"part{part}.parquet")
    files = str(tmp_path / "*.parquet")
    kwargs = {"shuffle_buffer": 5, "batch_size": 3}
    in_process = iter(module(tiny_model_dir, files, **kwargs).train_dataloader())
    in_workers = iter(module(tiny_model_dir, files, num_workers=2, **kwargs).train_dataloader())
    for _ in range(8):
        assert next(in_workers).items == next(in_process).items
