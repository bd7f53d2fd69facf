"""Every config in configs/ parses and prints through the CLI (no weights are loaded), in
the settings groups; bad settings are refused before any model loads, naming the keys.

Files under `configs/rows/` and `configs/toy/ablations/` are overlays: they hold only what
differs from a model's config and are printed on top of it, as users run them. Rows apply
to every model.
"""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import build_module, merge

CONFIGS = sorted(str(p) for p in Path("configs").rglob("*.yaml"))
MODEL_CONFIGS = [c for c in CONFIGS if Path(c).name == "prefix_rft.yaml"]
ROWS = [c for c in CONFIGS if Path(c).parent.name == "rows"]
GROUPS = ("rollout", "prefix", "loss", "update", "optim", "precision", "engine", "reward", "relift", "hints")


def command_for(config: str) -> list[str]:
    path = Path(config)
    if path.parent.name == "rows":
        return ["--config", "configs/qwen2.5-math-7b/prefix_rft.yaml", "--config", config]
    if path.parent.name == "ablations":
        return ["--config", str(path.parent.parent / "prefix_rft.yaml"), "--config", config]
    return ["--config", config]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefix_rft_pl", *args], capture_output=True, text=True, timeout=300)


def test_there_are_configs():
    assert "configs/toy/prefix_rft.yaml" in CONFIGS and len(ROWS) == 9 and len(MODEL_CONFIGS) == 4  # 6 + 3 hybrids


@pytest.mark.parametrize("config", CONFIGS)
def test_print_config(config):
    out = cli("fit", *command_for(config), "--print_config")
    assert out.returncode == 0, out.stderr[-3000:]
    printed = yaml.safe_load(out.stdout)
    assert printed["model"]["policy"]
    assert set(GROUPS) <= set(printed["model"])  # the settings groups, as the paper's appendix
    # the tokenizer is linked from the policy, never copied by hand
    assert "tokenizer" not in ((yaml.safe_load(Path(config).read_text()) or {}).get("data", {}).get("init_args") or {})


@pytest.mark.parametrize("model_config", MODEL_CONFIGS)
@pytest.mark.parametrize("row", ROWS)
def test_every_row_applies_to_every_model(model_config, row):
    """The row's settings over the model's build a module (the groups' checks included)."""
    model = yaml.safe_load(Path(model_config).read_text())["model"]
    overlay = yaml.safe_load(Path(row).read_text())["model"]
    settings = build_module(model["policy"], model, overlay).settings
    assert settings.rollout.max_response_tokens == model["rollout"]["max_response_tokens"]  # the model's budget kept
    for group, values in overlay.items():  # and the row's values on top
        for key, value in (values or {}).items():
            if not isinstance(value, dict):
                assert getattr(getattr(settings, group), key) == value, f"{row}: model.{group}.{key}"


@pytest.mark.parametrize("config", MODEL_CONFIGS)
def test_module_and_data_build_up_to_loading_weights(config):
    """The paper-scale configs name hub ids that cannot be downloaded here: build the module and
    the data module from the file (weights and tokenizers load later, in configure_model / setup)."""
    from datamodules import PromptDemoDataModule

    cfg = yaml.safe_load(Path(config).read_text())
    module = build_module(cfg["model"]["policy"], cfg["model"])
    assert module.policy is None and module.hparams.policy == cfg["model"]["policy"]
    data = PromptDemoDataModule(tokenizer=cfg["model"]["policy"], **cfg["data"]["init_args"])
    assert data.tokenizer is None


def test_the_module_takes_at_most_twelve_parameters():
    from prefix_rft_pl.module import PrefixRFTModule

    assert len(inspect.signature(PrefixRFTModule.__init__).parameters) - 1 <= 12  # less self


def test_more_hybrids_than_the_group_is_refused_before_the_model_loads_naming_both_keys():
    # a hub id that cannot be reached here: any attempt to load would fail differently
    out = cli("fit", "--config", "configs/toy/prefix_rft.yaml", "--model.policy", "nobody/no-such-model",
              "--model.rollout.num_hybrid", "6", "--model.rollout.group_size", "4", "--trainer.max_steps", "1")
    assert out.returncode != 0
    assert "model.rollout.num_hybrid" in out.stderr and "model.rollout.group_size" in out.stderr, out.stderr[-2000:]
    assert "no-such-model" not in out.stderr.split("model.rollout.num_hybrid")[0][-500:]


def test_an_old_flat_key_names_its_new_place(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  learning_rate: 1.0e-4\n  engine: vllm\n")
    out = cli("fit", "--config", "configs/toy/prefix_rft.yaml", "--config", str(old), "--print_config")
    assert out.returncode != 0
    assert "model.learning_rate moved to model.optim.lr" in out.stderr
    assert "model.engine.kind: vllm" in out.stderr
    out = cli("fit", "--config", "configs/toy/prefix_rft.yaml", "--model.group_size", "4", "--print_config")
    assert out.returncode != 0 and "model.group_size moved to model.rollout.group_size" in out.stderr


def test_an_unknown_variant_is_a_config_error():
    with pytest.raises(Exception, match="nope"):
        build_module("p", {"loss": {"aggregation": {"class_path": "prefix_rft_pl.variants.nope"}}})
    with pytest.raises(ValueError, match="model.loss.advantage_baseline"):  # nothing left to take a mean of
        build_module("p", {"rollout": {"group_size": 2, "num_hybrid": 2}, "loss": {"advantage_baseline": "ordinary"}})


def test_help_shows_the_groups_field_docs():
    out = cli("fit", "--help")
    assert out.returncode == 0
    assert "--model.rollout.num_hybrid" in out.stdout and "G_hyb, trajectories per prompt" in out.stdout


def test_settings_survive_the_checkpoints_hparams():
    """hparams are plain data (variants as class_path), and parse back into the same settings."""
    module = build_module("p", yaml.safe_load(Path("configs/rows/luffy.yaml").read_text())["model"])
    again = build_module("p", merge({}, {k: v for k, v in module.hparams.items() if k != "policy"}))
    assert again.settings.loss.aggregation.__class__ is module.settings.loss.aggregation.__class__
    assert again.settings.prefix.rule.gamma == module.settings.prefix.rule.gamma == 0.1
    assert again.settings.loss.clip == module.settings.loss.clip
