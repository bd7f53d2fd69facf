"""Demonstrations longer than the response budget (`max_demo_tokens`, linked by the CLI to
model.rollout.max_response_tokens) are left out and counted, never cut.

The tiny tokenizer spells "x" * n as n tokens, so a demonstration of n characters is n + 1
tokens with EOS: with a budget of 8, seven characters fit exactly and eight do not.
"""

from __future__ import annotations

import json

import pytest

from datamodules import PromptDemoDataModule
from datamodules.items import BadRowError

BUDGET = 8
DEMO_CHARS = [       # characters of each row's demonstrations; tokens = chars + 1 (EOS)
    [3],             # row 0: kept
    [7],             # row 1: exactly the budget, kept
    [8],             # row 2: one token over: left out, and the row has none left
    [20, 2],         # row 3: the first left out, the row kept with the second
    [9, 30, 1],      # row 4: two left out
    [10, 11],        # row 5: both left out: row skipped
    [5], [5], [5], [5], [5], [5],  # rows 6-11
]
DEMOS_LEFT_OUT = 1 + 1 + 2 + 2
ROWS_SKIPPED = 2     # rows 2 and 5


def write_task(path) -> str:
    rows = [{"problem": f"p{i}", "solution": ["x" * n for n in chars], "answer": str(i)}
            for i, chars in enumerate(DEMO_CHARS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def one_epoch(dm) -> list:
    """The 10 kept rows of epoch 0 (two batches of 5), in file order."""
    batches = iter(dm.train_dataloader())
    return [item for _ in range(2) for item in next(batches).items]


def make(tokenizer, files, **kwargs):
    kwargs = {"template": "toy", "batch_size": 5, "shuffle_buffer": 0, **kwargs}
    return PromptDemoDataModule(str(tokenizer), train_files=files, **kwargs)


def test_demonstrations_over_the_budget_are_left_out_and_counted(tiny_model_dir, tmp_path, caplog):
    path = write_task(tmp_path / "t.jsonl")
    dm = make(tiny_model_dir, path, max_demo_tokens=BUDGET)
    with caplog.at_level("WARNING", logger="datamodules"):
        items = one_epoch(dm)
    assert [item.uid for item in items] == [f"{path}:{i}" for i in (0, 1, 3, 4, 6, 7, 8, 9, 10, 11)]
    assert dm.skip_counts() == {"data/skipped": ROWS_SKIPPED, "data/skipped_no_demo_left": ROWS_SKIPPED,
                                "data/skipped_demo_too_long": DEMOS_LEFT_OUT}
    # what is handed out fits the budget, and is whole: nothing was cut
    assert all(len(ids) <= BUDGET for item in items for ids in item.demo_ids)
    kept = {item.uid.rsplit(":", 1)[1]: [len(ids) - 1 for ids in item.demo_ids] for item in items}
    assert kept == {"0": [3], "1": [7], "3": [2], "4": [1], **{str(i): [5] for i in range(6, 12)}}
    assert dm.tokenizer.decode(items[1].demo_ids[0]) == "x" * 7 + dm.tokenizer.eos_token
    # one warning per reason, naming the first file and row met
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    first_demo = f"{path} line 3 (demo_too_long: demonstration 1 of 1 has 9 > max_demo_tokens=8 tokens"
    assert f"skipping demonstrations: {first_demo}" in warnings[0] and "left out, not cut" in warnings[0]
    assert f"rows: {path} line 3 (no_demo_left" in warnings[1]


def test_without_a_budget_nothing_is_dropped(tiny_model_dir, tmp_path):
    dm = make(tiny_model_dir, write_task(tmp_path / "t.jsonl"), max_demo_tokens=None, batch_size=4)
    batches = iter(dm.train_dataloader())
    items = [item for _ in range(3) for item in next(batches).items]
    assert [[len(ids) - 1 for ids in item.demo_ids] for item in items] == DEMO_CHARS
    assert dm.skip_counts() == {"data/skipped": 0}


def test_strict_refuses_the_first_demonstration_over_the_budget(tiny_model_dir, tmp_path):
    path = write_task(tmp_path / "t.jsonl")
    batches = iter(make(tiny_model_dir, path, max_demo_tokens=BUDGET, strict=True, batch_size=2).train_dataloader())
    next(batches)  # rows 0 and 1 fit
    with pytest.raises(BadRowError, match=rf"{path} line 3: demo_too_long: demonstration 1 of 1 has 9 > "):
        next(batches)


def test_held_out_rows_keep_their_place_and_count_their_long_demonstrations(tiny_model_dir, tmp_path):
    path = write_task(tmp_path / "v.jsonl")
    dm = PromptDemoDataModule(str(tiny_model_dir), train_files=path, val_files=path, template="toy",
                              max_demo_tokens=BUDGET, val_batch_size=12)
    (batch,) = list(dm.val_dataloader())
    assert len(batch) == 12 and not dm.val_skipped.get("no_demo_left")  # held-out demonstrations are optional
    assert dm.skip_counts()["data/val_skipped_demo_too_long"] == DEMOS_LEFT_OUT
    assert all(len(ids) <= BUDGET for item in batch.items for ids in item.demo_ids)
