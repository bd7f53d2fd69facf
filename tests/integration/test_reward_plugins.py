"""End to end: the toy config fits for a few steps with reward components of a user's (one
defined here, one reading an extra column of the data file), each logged as reward/<name>,
the advantage from their weighted sum, and completions.jsonl written; a hanging and a raising
component cost their samples 0 and are counted, and the run finishes."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from prefix_rft_pl.reward_components import RewardComponent

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
GROUP, PROMPTS, STEPS = 4, 2, 2


class FormatReward(RewardComponent):
    """A user's format reward, as the README shows: 1.0 when the completion boxes an answer."""

    def __init__(self, name: str = "format", weight: float = 1.0):
        super().__init__(name, weight)

    def score(self, completion, answers, extra):
        return float("\\boxed{" in completion)


def overlay(tmp_path: Path, components: list[dict], timeout_s: float = 2.0) -> Path:
    cfg = {
        "trainer": {
            "max_steps": STEPS, "limit_val_batches": 0, "default_root_dir": str(tmp_path),
            "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                        "init_args": {"save_dir": str(tmp_path), "name": "run"}},
                       {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                        "init_args": {"save_dir": str(tmp_path), "name": "run"}}],
            "callbacks": [{"class_path": "callbacks.PrefixSchedule", "init_args": {"steps": STEPS}},
                          {"class_path": "callbacks.CompletionSamples",
                           "init_args": {"every_n_steps": 1, "num_samples": GROUP}}],
        },
        "model": {"rollout": {"group_size": GROUP}, "update": {"micro_batch_size": 8},
                  "reward": {"timeout_s": timeout_s, "components": components}},
        "data": {"init_args": {"batch_size": PROMPTS}},
    }
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def fit(tmp_path, tiny_model_dir, train_file, components, timeout_s=2.0) -> Path:
    from prefix_rft_pl.cli import main

    main(["fit", "--config", "configs/toy/prefix_rft.yaml", "--config", str(overlay(tmp_path, components, timeout_s)),
          "--model.policy", str(tiny_model_dir), "--data.init_args.train_files", str(train_file),
          "--data.init_args.val_files", "null"])
    return tmp_path / "run"


def with_bonus_column(toy_task_files, tmp_path) -> Path:
    """The toy's training rows with an extra column, `bonus`, the data file carries."""
    rows = [json.loads(line) for line in open(toy_task_files["train"])]
    path = tmp_path / "train_with_bonus.jsonl"
    path.write_text("".join(json.dumps({**row, "bonus": 0.25}) + "\n" for row in rows))
    return path


def metric_rows(run: Path) -> list[dict]:
    return [row for row in csv.DictReader((run / "metrics.csv").open()) if row.get("reward/timeouts")]


def completions(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]


def test_fit_with_a_user_reward_logs_each_component_and_writes_completions(tmp_path, tiny_model_dir, toy_task_files):
    run = fit(tmp_path, tiny_model_dir, with_bonus_column(toy_task_files, tmp_path), [
        {"class_path": "prefix_rft_pl.reward_components.Accuracy"},
        {"class_path": "tests.integration.test_reward_plugins.FormatReward", "init_args": {"weight": 0.5}},
        {"class_path": "tests.unit.reward_helpers.FromColumn",
         "init_args": {"name": "bonus", "column": "bonus", "weight": 2.0}}])

    rows = metric_rows(run)
    assert len(rows) == STEPS
    for row in rows:
        assert float(row["reward/bonus"]) == 0.25  # the extra column reached the component
        assert float(row["reward/errors_format"]) == 0 and float(row["reward/timeouts_format"]) == 0
        assert 0 <= float(row["reward/format"]) <= 1 and 0 <= float(row["reward/accuracy"]) <= 1

    lines = completions(run)
    assert [line["step"] for line in lines] == [1] * GROUP + [2] * GROUP  # every step, the first prompt's group
    for line in lines:
        assert set(line) == {"step", "uid", "prompt", "prefix_len", "completion", "rewards", "statuses", "reward",
                             "advantage"}
        assert set(line["rewards"]) == {"accuracy", "format", "bonus"} and line["rewards"]["bonus"] == 0.25
        assert line["rewards"]["format"] == float("\\boxed{" in line["completion"])
        assert line["reward"] == pytest.approx(line["rewards"]["accuracy"] + 0.5 * line["rewards"]["format"] + 0.5)
        assert "#" in line["prompt"] or "&" in line["prompt"]  # the toy problem, as text
    for step in range(1, STEPS + 1):
        group = [line for line in lines if line["step"] == step]
        assert len({line["uid"] for line in group}) == 1 and sum(line["prefix_len"] > 0 for line in group) == 1
        mean = sum(line["reward"] for line in group) / GROUP  # Dr. GRPO on the weighted sum
        assert [line["advantage"] for line in group] == pytest.approx([line["reward"] - mean for line in group])
    events = b"".join(p.read_bytes() for p in run.glob("**/events.out.tfevents*"))
    assert b"completions" in events  # TensorBoard's text tab


def test_hanging_and_raising_components_cost_their_samples_zero_and_the_run_goes_on(tmp_path, tiny_model_dir,
                                                                                     toy_task_files):
    run = fit(tmp_path, tiny_model_dir, toy_task_files["train"], [
        {"class_path": "prefix_rft_pl.reward_components.Accuracy"},
        {"class_path": "tests.unit.reward_helpers.Hangs", "init_args": {"name": "slow", "marker": ""}},
        {"class_path": "tests.unit.reward_helpers.Raises", "init_args": {"name": "buggy", "marker": ""}}],
        timeout_s=0.5)

    assert (run / "hf_export").is_dir()  # the run finished
    rows = metric_rows(run)
    assert len(rows) == STEPS
    for row in rows:
        assert float(row["reward/timeouts_slow"]) == PROMPTS * GROUP and float(row["reward/slow"]) == 0
        assert float(row["reward/errors_buggy"]) == PROMPTS * GROUP and float(row["reward/buggy"]) == 0
        assert float(row["reward/timeouts"]) >= PROMPTS * GROUP and float(row["reward/errors"]) >= PROMPTS * GROUP
    for line in completions(run):
        assert line["statuses"]["slow"] == "timeout" and line["statuses"]["buggy"] == "error"
        assert line["rewards"]["slow"] == 0 and line["rewards"]["buggy"] == 0
        assert line["reward"] == line["rewards"]["accuracy"]
