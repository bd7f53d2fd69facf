"""PromptDemoDataModule behaviour: streaming, subsets, resume, rank split, bad rows."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import datamodules.stream
from datamodules import PromptDemoDataModule
from datamodules.items import BadRowError


def write_rows(path, num_rows, start=0):
    rows = [{"problem": f"p{i}", "solution": f"s{i}", "answer": str(i)} for i in range(start, start + num_rows)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def make(tokenizer, files, **kwargs):
    kwargs = {"template": "toy", "batch_size": 4, "shuffle_buffer": 16, "seed": 1, **kwargs}
    return PromptDemoDataModule(str(tokenizer), train_files=files, **kwargs)


def take(batches, num_batches):
    return [[item.uid for item in next(batches).items] for _ in range(num_batches)]


def test_first_batch_reads_only_a_buffer_of_rows(tiny_model_dir, tmp_path, monkeypatch):
    """Streaming: the first batch needs shuffle_buffer + batch_size rows, not the file."""
    pulled = []
    iter_source = datamodules.stream.iter_source

    def counting(source):
        for raw in iter_source(source):
            pulled.append(raw.uid)
            yield raw

    monkeypatch.setattr(datamodules.stream, "iter_source", counting)
    dm = make(tiny_model_dir, write_rows(tmp_path / "big.jsonl", 5000), shuffle_buffer=32)
    next(iter(dm.train_dataloader()))
    assert len(pulled) <= 32 + 4


@pytest.mark.parametrize("subset, expected", [(0.01, 5), (0.1, 50), (17, 17)])
def test_subsets_train_on_a_fixed_seeded_share(tiny_model_dir, tmp_path, subset, expected):
    files = [write_rows(tmp_path / "a.jsonl", 300), write_rows(tmp_path / "b.jsonl", 200, start=300)]
    batches = iter(make(tiny_model_dir, files, subset=subset, batch_size=1).train_dataloader())
    seen = {i for b in take(batches, 3 * expected) for i in b}
    assert len(seen) == expected
    again = make(tiny_model_dir, files, subset=subset, batch_size=1)
    assert {i for b in take(iter(again.train_dataloader()), 3 * expected) for i in b} == seen
    other = make(tiny_model_dir, files, subset=subset, batch_size=1, seed=2)
    assert {i for b in take(iter(other.train_dataloader()), 3 * expected) for i in b} != seen


def test_epochs_reshuffle_and_continue(tiny_model_dir, tmp_path):
    dm = make(tiny_model_dir, write_rows(tmp_path / "t.jsonl", 12))
    epochs = take(iter(dm.train_dataloader()), 9)
    e0, e1, e2 = (sum(epochs[3 * k:3 * k + 3], []) for k in range(3))
    assert len(set(e0)) == 12 and set(e0) == set(e1) == set(e2) and e0 != e1 != e2
    assert (dm.position.epoch, dm.position.offset) == (2, 12)


@pytest.mark.parametrize("consumed", [2, 5, 6])
def test_state_dict_round_trip_resumes_without_repeat_or_skip(tiny_model_dir, tmp_path, consumed):
    files = write_rows(tmp_path / "t.jsonl", 22)  # 5.5 batches per epoch: batches straddle epochs
    reference = take(iter(make(tiny_model_dir, files).train_dataloader()), 12)
    first = make(tiny_model_dir, files)
    seen = take(iter(first.train_dataloader()), consumed)
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint keeps
    second = make(tiny_model_dir, files)
    second.load_state_dict(state)
    assert seen + take(iter(second.train_dataloader()), 12 - consumed) == reference


def test_with_a_trainer_only_batches_handed_to_the_step_count(tiny_model_dir, tmp_path):
    """Lightning prefetches; the position moves when on_before_batch_transfer sees a batch."""
    dm = make(tiny_model_dir, write_rows(tmp_path / "t.jsonl", 20))
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1)
    batches = iter(dm.train_dataloader())
    first, prefetched = next(batches), next(batches)
    dm.on_before_batch_transfer(first, 0)
    assert (dm.position.epoch, dm.position.offset) == (0, 4)
    dm.on_before_batch_transfer(prefetched, 0)
    assert dm.position.offset == 8


def test_two_ranks_see_disjoint_complete_shares(tiny_model_dir, tmp_path):
    files = [write_rows(tmp_path / "a.jsonl", 13), write_rows(tmp_path / "b.jsonl", 11, start=13)]
    shares = []
    for rank in range(2):
        dm = make(tiny_model_dir, files, val_files=files[1], val_batch_size=3)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        shares.append({u for b in take(iter(dm.train_dataloader()), 3) for u in b})
        shares.append({i.uid for b in dm.val_dataloader() for i in b.items})
    train0, val0, train1, val1 = shares
    assert not train0 & train1 and len(train0 | train1) == 24
    assert not val0 & val1 and len(val0 | val1) == 11


BAD_ROWS = [
    {"solution": "s", "answer": "1"},                                  # missing_field
    {"problem": "", "solution": "s", "answer": "1"},                   # empty_field
    {"problem": "p", "solution": ["ok", ""], "answer": "1"},           # empty_field
    {"problem": ["p"], "solution": "s", "answer": "1"},                # non_string_field
    {"problem": "p", "solution": "s", "answer": 1},                    # non_string_field
    {"problem": "p", "solution": "s", "answer": "\\boxed{ }"},         # bad_answer
    {"problem": "p" * 40, "solution": "s", "answer": "1"},             # prompt_too_long
    {"problem": "p", "solution": "s" * 40, "answer": "1"},             # demo_too_long, then no_demo_left
    "just a string",                                                   # not_an_object
]
BAD_COUNTS = {"missing_field": 1, "empty_field": 2, "non_string_field": 2, "bad_answer": 1,
              "prompt_too_long": 1, "no_demo_left": 1, "not_an_object": 1,
              # demonstrations, not rows: the bad row's only one, and one of good row 0's two, met again in epoch 1
              "demo_too_long": 3}


def write_with_bad_rows(path):
    good = [{"problem": f"p{i}", "solution": "s" * 5 + "x" * 30 if i == 0 else f"s{i}", "answer": str(i)}
            for i in range(8)]
    good[0]["solution"] = ["s" * 40, "short"]  # one over-long demonstration dropped, the row kept
    path.write_text("".join(json.dumps(r) + "\n" for r in good[:4] + BAD_ROWS + good[4:]))
    return str(path)


def test_bad_rows_are_skipped_and_counted_by_reason(tiny_model_dir, tmp_path, caplog):
    dm = make(tiny_model_dir, write_with_bad_rows(tmp_path / "t.jsonl"), max_prompt_tokens=30,
              max_demo_tokens=20, shuffle_buffer=0)
    with caplog.at_level("INFO", logger="datamodules"):
        uids = take(iter(dm.train_dataloader()), 3)  # 8 good rows, then into epoch 1
    assert sorted(sum(uids[:2], [])) == sorted(f"{tmp_path}/t.jsonl:{i}" for i in [0, 1, 2, 3, 13, 14, 15, 16])
    assert dict(dm.skipped) == BAD_COUNTS
    assert dm.skip_counts()["data/skipped_empty_field"] == 2
    assert "rows skipped so far" in caplog.text and "non_string_field=2" in caplog.text


def test_skips_are_counted_as_met_and_each_reason_warned_once(tiny_model_dir, tmp_path, caplog):
    """An endless stream never reaches an epoch end: counts must be current at every batch."""
    path = tmp_path / "t.jsonl"
    rows = [{"problem": "p", "solution": "s", "answer": str(i)} for i in range(20)]
    rows[1:1] = [{"problem": "", "solution": "s", "answer": "1"}] * 3 + [{"solution": "s", "answer": "1"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dm = make(tiny_model_dir, str(path), shuffle_buffer=0)
    with caplog.at_level("WARNING", logger="datamodules"):
        next(iter(dm.train_dataloader()))  # rows 0-7: three empty problems, one missing field
    assert dm.skip_counts() == {"data/skipped": 4, "data/skipped_empty_field": 3, "data/skipped_missing_field": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2  # one per reason, naming the first such row
    assert f"{path} line 2 (empty_field" in warnings[0] and f"{path} line 5 (missing_field" in warnings[1]


def test_skip_counts_start_at_zero(tiny_model_dir, tmp_path):
    assert make(tiny_model_dir, write_rows(tmp_path / "t.jsonl", 8)).skip_counts() == {"data/skipped": 0}


def test_kept_row_keeps_only_its_short_demonstrations(tiny_model_dir, tmp_path):
    dm = make(tiny_model_dir, write_with_bad_rows(tmp_path / "t.jsonl"), max_demo_tokens=20, shuffle_buffer=0)
    item = next(iter(dm.train_dataloader())).items[0]
    assert dm.tokenizer.decode(item.demo_ids[0]) == "short<|endoftext|>" and len(item.demo_ids) == 1


def test_strict_stops_at_the_first_bad_row_naming_file_and_row(tiny_model_dir, tmp_path):
    path = write_with_bad_rows(tmp_path / "t.jsonl")
    dm = make(tiny_model_dir, path, strict=True, shuffle_buffer=0)
    batches = iter(dm.train_dataloader())
    next(batches)  # rows 0-3 are good
    with pytest.raises(BadRowError, match=rf"{path} line 5: missing_field"):
        next(batches)


def test_a_set_with_no_usable_row_is_an_error_not_a_hang(tiny_model_dir, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in BAD_ROWS[:6] + BAD_ROWS[8:]))  # bad without limits
    with pytest.raises(ValueError, match="without a usable row"):
        next(iter(make(tiny_model_dir, str(path)).train_dataloader()))


def test_worker_processes_give_the_same_stream(tiny_model_dir, tmp_path):
    files = write_rows(tmp_path / "t.jsonl", 30)
    in_process = take(iter(make(tiny_model_dir, files).train_dataloader()), 10)
    assert take(iter(make(tiny_model_dir, files, num_workers=2).train_dataloader()), 10) == in_process
