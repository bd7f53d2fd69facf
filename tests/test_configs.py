"""Every config in configs/ parses and prints through the CLI (no weights are loaded).

Files under a `rows/` or `ablations/` folder are overlays: they hold only what differs
from the folder's parent config (e.g. configs/toy/prefix_rft.yaml) and are printed on top
of it, as users run them.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CONFIGS = sorted(str(p) for p in Path("configs").rglob("*.yaml"))
OVERLAY_DIRS = ("rows", "ablations")


def command_for(config: str) -> list[str]:
    path = Path(config)
    if path.parent.name in OVERLAY_DIRS:
        return ["--config", str(path.parent.parent / "prefix_rft.yaml"), "--config", config]
    return ["--config", config]


def test_there_are_configs():
    assert "configs/toy/prefix_rft.yaml" in CONFIGS


@pytest.mark.parametrize("config", CONFIGS)
def test_print_config(config):
    out = subprocess.run([sys.executable, "-m", "prefix_rft_pl", "fit", *command_for(config), "--print_config"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = yaml.safe_load(out.stdout)
    assert printed["model"]["policy"]
    # the tokenizer is linked from the policy, never copied by hand
    assert "tokenizer" not in ((yaml.safe_load(Path(config).read_text()) or {}).get("data", {}).get("init_args") or {})


@pytest.mark.parametrize("config", [c for c in CONFIGS if Path(c).parent.name not in OVERLAY_DIRS])
def test_module_and_data_build_up_to_loading_weights(config):
    """The paper-scale configs name hub ids that cannot be downloaded here: build the module and
    the data module from the file (weights and tokenizers load later, in configure_model / setup)."""
    from datamodules import PromptDemoDataModule
    from prefix_rft_pl.module import PrefixRFTModule

    cfg = yaml.safe_load(Path(config).read_text())
    module = PrefixRFTModule(**cfg["model"])
    assert module.policy is None and module.hparams.policy == cfg["model"]["policy"]
    data = PromptDemoDataModule(tokenizer=cfg["model"]["policy"], **cfg["data"]["init_args"])
    assert data.tokenizer is None
