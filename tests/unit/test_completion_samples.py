"""callbacks.CompletionSamples: which steps it writes, what a line holds, a resume that drops the
lines of steps after its checkpoint's, rank 0 only, and the TensorBoard / W&B payloads."""

from __future__ import annotations

import json
from types import SimpleNamespace

from callbacks.completion_samples import CompletionSamples, as_markdown, table
from prefix_rft_pl.types import ScoredRollouts

ROLLOUTS = ScoredRollouts(
    uids=["a", "a", "b"], prompt_ids=[[1, 2], [1, 2], [3]], prefix_lens=[0, 5, 0],
    completions=["x \\boxed{1}", "y", "z"], rewards={"accuracy": [1.0, 0.0, 0.0], "format": [1.0, 0.0, 1.0]},
    statuses={"accuracy": ["correct", "no_answer", "wrong"], "format": ["ok", "ok", "timeout"]},
    reward=[1.5, 0.0, 0.5], advantages=[0.75, -0.75, 0.0])


def trainer(tmp_path, step: int, rank: int = 0):
    return SimpleNamespace(log_dir=str(tmp_path), default_root_dir=str(tmp_path), global_step=step,
                           is_global_zero=rank == 0, loggers=[])


def run_steps(callback, tmp_path, steps, rank=0, start=0):
    """Fit start at `start`, then one batch per step count in `steps` (global_step after each)."""
    module = SimpleNamespace(tokenizer=SimpleNamespace(decode=lambda ids: "prompt " + " ".join(map(str, ids))))
    t = trainer(tmp_path, start, rank)
    callback.on_fit_start(t, module)
    callback.on_train_start(t, module)
    for step in steps:
        callback.on_train_batch_start(t, module, None, 0)
        t.global_step = step
        callback.on_train_batch_end(t, module, {"rollouts": ROLLOUTS}, None, 0)


def lines(tmp_path):
    return [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]


def test_writes_the_first_samples_every_n_steps(tmp_path):
    run_steps(CompletionSamples(every_n_steps=2, num_samples=2), tmp_path, [1, 2, 3, 4, 5])
    got = lines(tmp_path)
    assert [line["step"] for line in got] == [2, 2, 4, 4]
    assert got[1] == {"step": 2, "uid": "a", "prompt": "prompt 1 2", "prefix_len": 5, "completion": "y",
                      "rewards": {"accuracy": 0.0, "format": 0.0},
                      "statuses": {"accuracy": "no_answer", "format": "ok"}, "reward": 0.0, "advantage": -0.75}


def test_several_optimiser_steps_per_batch_write_when_a_multiple_is_passed(tmp_path):
    run_steps(CompletionSamples(every_n_steps=3, num_samples=1), tmp_path, [2, 4, 6, 8])  # 2 per batch
    assert [line["step"] for line in lines(tmp_path)] == [4, 6]


def test_resume_drops_later_steps_and_appends(tmp_path):
    run_steps(CompletionSamples(every_n_steps=1, num_samples=1), tmp_path, [1, 2, 3])
    with (tmp_path / "completions.jsonl").open("a") as f:
        f.write('{"step": 4, "uid": "cut sho')  # a kill mid-line
    run_steps(CompletionSamples(every_n_steps=1, num_samples=1), tmp_path, [3, 4], start=2)  # from step 2's checkpoint
    assert [line["step"] for line in lines(tmp_path)] == [1, 2, 3, 4]


def test_only_rank_zero_writes(tmp_path):
    run_steps(CompletionSamples(every_n_steps=1), tmp_path, [1, 2], rank=1)
    assert not (tmp_path / "completions.jsonl").exists()


def test_tensorboard_text_and_wandb_table():
    records = [{"step": 2, "uid": "a", "prompt": "Q: 1#1\nA: ", "prefix_len": 5, "completion": "1#1=2 \\boxed{2}",
                "rewards": {"accuracy": 1.0, "format": 1.0}, "statuses": {}, "reward": 1.5, "advantage": 0.75}]
    text = as_markdown(records)
    assert text.startswith("#### 1. uid a, prefix 5 tokens, reward 1.5 (accuracy 1, format 1), advantage +0.75")
    assert "\n    Q: 1#1\n    A: \n    ---\n    1#1=2 \\boxed{2}" in text  # verbatim, as code
    columns, rows = table(records)
    assert columns == ["step", "uid", "prompt", "prefix_len", "completion", "reward", "advantage", "accuracy", "format"]
    assert rows == [[2, "a", "Q: 1#1\nA: ", 5, "1#1=2 \\boxed{2}", 1.5, 0.75, 1.0, 1.0]]
