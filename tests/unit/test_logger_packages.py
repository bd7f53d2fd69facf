"""A WandbLogger without wandb installed fails with one clear message, before jsonargparse's union error."""

import sys

import pytest
import yaml

from prefix_rft_pl.cli import main, missing_logger_packages

MESSAGE = ("trainer.logger: lightning.pytorch.loggers.WandbLogger needs the wandb package, which is not installed: "
           "pip install -e .[wandb]")


@pytest.fixture
def no_wandb(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails, find_spec finds nothing


def test_wandb_logger_on_the_command_line_without_wandb(no_wandb, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", "configs/toy/prefix_rft.yaml", "--trainer.logger",
              "lightning.pytorch.loggers.WandbLogger", "--model.policy", "/nonexistent"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert MESSAGE in err and "Union" not in err


def test_wandb_logger_in_a_config_file_without_wandb(no_wandb, tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"logger": [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}},
        {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": {"project": "p"}}]}}))
    assert missing_logger_packages(["fit", "--config", str(overlay)]) == [MESSAGE]
    assert missing_logger_packages(["fit", f"--config={overlay}"]) == [MESSAGE]
    assert missing_logger_packages(["fit", "--config", "configs/toy/prefix_rft.yaml"]) == []


def test_wandb_logger_with_wandb_installed():
    pytest.importorskip("wandb")
    assert missing_logger_packages(["fit", "--trainer.logger", "lightning.pytorch.loggers.WandbLogger"]) == []
