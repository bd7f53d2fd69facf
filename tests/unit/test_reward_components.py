"""Reward components: the weighted sum and the advantage it feeds, user components in real
worker processes (a hang and a raise score 0 and are counted, the others go on), the row's
extra columns, the config's checks and the checkpoint's plain data."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from prefix_rft_pl.config import Reward, Settings, plain
from prefix_rft_pl.losses import group_advantages
from prefix_rft_pl.reward_components import Accuracy, WeightedReward, weighted_sum
from tests.unit.reward_helpers import Boxed, FromColumn, Hangs, Raises

RIGHT, WRONG, NO_BOX = "so \\boxed{4}", "so \\boxed{5}", "so 4"


def test_weighted_sum_feeds_the_group_advantage():
    # accuracy [1, 0, 0, 0], format [1, 1, 0, 1] at weights 1 and 0.5: r = [1.5, 0.5, 0, 0.5],
    # mean 0.625, Dr. GRPO A = r - mean = [0.875, -0.125, -0.625, -0.125]
    total = weighted_sum([1.0, 0.5], [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0]])
    assert total == [1.5, 0.5, 0.0, 0.5]
    torch.testing.assert_close(group_advantages(torch.tensor([total])),
                               torch.tensor([[0.875, -0.125, -0.625, -0.125]]))


def test_default_is_math_verify_accuracy_alone_with_weight_one():
    (component,) = Reward().component_objects
    assert type(component) is Accuracy and component.name == "accuracy" and component.weight == 1.0


@pytest.fixture
def reward_of():
    made = []

    def make(*components, timeout_s=1.0):
        made.append(WeightedReward(components, workers=2, timeout_s=timeout_s))
        return made[-1]

    yield make
    for reward in made:
        reward.close()


def test_user_component_runs_in_workers_beside_accuracy_and_sums_with_its_weight(reward_of):
    reward = reward_of(Accuracy(), Boxed(name="format", weight=0.5))
    scored = reward([RIGHT, WRONG, NO_BOX], [["4"]] * 3)
    assert scored.components["accuracy"].values == [1.0, 0.0, 0.0]
    assert scored.components["format"].values == [1.0, 1.0, 0.0]
    assert scored.total == [1.5, 0.5, 0.0]
    metrics = scored.metrics()
    assert metrics["reward/accuracy"] == pytest.approx(1 / 3) and metrics["reward/format"] == pytest.approx(2 / 3)
    assert metrics["reward/no_answer"] == 1 and metrics["reward/errors"] == 0 and metrics["reward/timeouts"] == 0


def test_component_sees_the_rows_extra_columns(reward_of):
    reward = reward_of(FromColumn(column="bonus", name="bonus", weight=2.0))
    scored = reward([NO_BOX, NO_BOX], [["4"], ["4"]], [{"bonus": 0.25}, {"bonus": 1}])
    assert scored.total == [0.5, 2.0]


@pytest.mark.parametrize("in_c", [False, True], ids=["python_alarm", "killed_at_bound"])
def test_hanging_component_scores_zero_is_counted_and_bounded(reward_of, in_c):
    reward = reward_of(Accuracy(), Hangs(marker="5", in_c=in_c, name="slow", weight=1.0), timeout_s=0.5)
    start = time.monotonic()
    scored = reward([RIGHT, WRONG, WRONG, RIGHT], [["4"]] * 4)
    assert time.monotonic() - start < 0.5 * 2 + 5.0  # two hangs on two workers, plus worker start-up
    assert scored.components["slow"].values == [1.0, 0.0, 0.0, 1.0]
    assert scored.components["slow"].statuses == ["ok", "timeout", "timeout", "ok"]
    assert scored.total == [2.0, 0.0, 0.0, 2.0]  # accuracy still counts
    metrics = scored.metrics()
    assert metrics["reward/timeouts_slow"] == 2 and metrics["reward/timeouts"] == 2
    assert reward([RIGHT], [["4"]]).components["slow"].values == [1.0]  # and the pool goes on


def test_raising_or_non_finite_component_scores_zero_is_counted_and_warned_once(reward_of, caplog):
    reward = reward_of(Accuracy(), Raises(marker="5", nan_marker="so 4", name="buggy", weight=1.0))
    with caplog.at_level(logging.WARNING, logger="prefix_rft_pl.reward_components"):
        scored = reward([RIGHT, WRONG, NO_BOX, WRONG], [["4"]] * 4)
        reward([WRONG], [["4"]])
    assert scored.components["buggy"].values == [1.0, 0.0, 0.0, 0.0]
    assert scored.components["buggy"].statuses == ["ok", "error", "error", "error"]  # raise, NaN, raise
    assert scored.total == [2.0, 0.0, 0.0, 0.0]
    assert scored.metrics()["reward/errors_buggy"] == 3 and scored.metrics()["reward/errors"] == 3
    warnings = [r.getMessage() for r in caplog.records if "buggy" in r.getMessage()]
    assert len(warnings) == 1 and "a bug in a user's reward" in warnings[0] and "reward/errors_buggy" in warnings[0]


# ---------------------------------------------------------------- config

@pytest.mark.parametrize(("components", "message"), [
    ([Accuracy(), Boxed(name="accuracy")], r"model.reward.components: duplicate names \['accuracy'\]"),
    ([Boxed(weight="abc")], r"model.reward.components\[0\].weight: must be a finite number, got 'abc'"),
    ([Boxed(weight=float("inf"))], r"model.reward.components\[0\].weight: must be a finite number"),
    ([Boxed(name="timeouts")], r"model.reward.components\[0\].name: .*got 'timeouts'"),
    ([Boxed(name="has space")], r"model.reward.components\[0\].name"),
    ([object()], r"model.reward.components\[0\]: must be a prefix_rft_pl.reward_components.RewardComponent"),
    ([{"class_path": "my_rewards.Missing"}], r"model.reward.components\[0\].class_path: cannot import 'my_rewards"),
    ([], r"model.reward.components: needs at least one component"),
])
def test_bad_components_are_config_errors_naming_the_key(components, message):
    with pytest.raises(ValueError, match=message):
        Reward(components=components)


def test_cli_refuses_an_unknown_class_and_a_weight_that_is_not_a_number(tiny_model_dir):
    from tests.helpers import build_module

    for spec, words in [({"class_path": "tests.unit.reward_helpers.Nope"}, ["reward.components", "Nope"]),
                        ({"class_path": "tests.unit.reward_helpers.Boxed", "init_args": {"weight": "abc"}},
                         ["reward.components", "weight", "abc"])]:
        with pytest.raises(Exception) as error:
            build_module(str(tiny_model_dir), {"reward": {"components": [spec]}})
        assert all(word in str(error.value) for word in words), str(error.value)


def test_components_round_trip_through_the_checkpoints_plain_data(tiny_model_dir):
    from tests.helpers import build_module

    module = build_module(str(tiny_model_dir), {"reward": {"components": [
        {"class_path": "prefix_rft_pl.reward_components.Accuracy"},
        {"class_path": "tests.unit.reward_helpers.FromColumn", "init_args": {"name": "bonus", "weight": 0.2}}]}})
    saved = module.hparams["reward"]["components"]
    assert saved == [
        {"class_path": "prefix_rft_pl.reward_components.Accuracy", "init_args": {"name": "accuracy", "weight": 1.0}},
        {"class_path": "tests.unit.reward_helpers.FromColumn",
         "init_args": {"name": "bonus", "weight": 0.2, "column": "bonus"}}]
    again = Reward(**module.hparams["reward"])
    assert [(type(c), c.name, c.weight) for c in again.component_objects] == [(Accuracy, "accuracy", 1.0),
                                                                       (FromColumn, "bonus", 0.2)]
    assert plain(Settings(reward=again))["reward"] == module.hparams["reward"]


def test_rows_extra_columns_reach_the_prompt_item():
    from datamodules.layouts import PRESETS, parse_row

    row = {"problem": "1#1", "solution": "\\boxed{2}", "answer": "2", "source": "toy", "difficulty": 3}
    assert parse_row(row, PRESETS["plain"], "0", True).extra == {"source": "toy", "difficulty": 3}
    openr1 = {"prompt": [{"role": "user", "content": "q"}], "target": [{"role": "assistant", "content": "d"}],
              "reward_model": {"ground_truth": "2", "style": "rule"}, "data_source": "x"}
    assert parse_row(openr1, PRESETS["openr1"], "0", True).extra == {"data_source": "x"}  # roles' columns left out


def test_the_readmes_format_reward_example_runs(tmp_path, monkeypatch, tiny_model_dir, reward_of):
    import re
    from pathlib import Path

    import yaml

    from tests.helpers import build_module

    readme = Path("README.md").read_text()
    code, config = re.search(r"```python\n(\s*# my_rewards.py.*?)```\s*```yaml\n(.*?)```", readme, re.S).groups()
    (tmp_path / "my_rewards.py").write_text("\n".join(line[2:] for line in code.splitlines()))
    monkeypatch.syspath_prepend(str(tmp_path))  # the workers get this process's import path
    model = yaml.safe_load("\n".join(line[2:] for line in config.splitlines()))["model"]
    reward = build_module(str(tiny_model_dir), model).settings.reward
    scored = reward_of(*reward.component_objects)([RIGHT, "\\boxed{4} \\boxed{4}", NO_BOX], [["4"]] * 3)
    assert scored.components["format"].values == [1.0, 0.0, 0.0]
    assert scored.total == pytest.approx([1.1, 1.0, 0.0])
