"""Every config in configs/ parses and prints through the CLI (no weights are loaded)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CONFIGS = sorted(str(p) for p in Path("configs").rglob("*.yaml"))


def test_there_are_configs():
    assert "configs/toy/prefix_rft.yaml" in CONFIGS


@pytest.mark.parametrize("config", CONFIGS)
def test_print_config(config):
    out = subprocess.run([sys.executable, "-m", "prefix_rft_pl", "fit", "--config", config, "--print_config"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = yaml.safe_load(out.stdout)
    assert printed["model"]["policy"]
    # the tokenizer is linked from the policy, never copied by hand
    assert "tokenizer" not in (yaml.safe_load(Path(config).read_text()).get("data", {}).get("init_args") or {})
