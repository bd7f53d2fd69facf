"""The main job on the bundled CPU default: `python -m prefix_rft_pl.toy`.

1. writes the toy task and a randomly initialised tiny Qwen2 model (cached);
2. builds the toy base by a short SFT run of this framework (configs/toy/sft_base.yaml),
   when artifacts/toy/base is missing (cached);
3. trains Prefix-RFT from the base (configs/toy/prefix_rft.yaml);
4. prints held-out accuracy (greedy, math-verify graded) of the base and of the trained
   policy on the easy (`#`) and hard (`&`) held-out splits.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from prefix_rft_pl.cli import main as cli_main


def heldout_accuracy(policy: str, files: str, max_response_tokens: int = 40) -> float:
    """Greedy accuracy of `policy` on a held-out jsonl, through the module's validation loop."""
    import lightning as L

    from datamodules import PromptDemoDataModule
    from prefix_rft_pl.config import Rollout
    from prefix_rft_pl.module import PrefixRFTModule

    rollout = Rollout(max_response_tokens=max_response_tokens, val_temperature=0.0)
    module = PrefixRFTModule(policy=policy, rollout=rollout)
    data = PromptDemoDataModule(tokenizer=policy, val_files=files, template="toy", layout="plain", val_batch_size=100)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    return trainer.validate(module, datamodule=data, verbose=False)[0]["val/accuracy"]


def newest_export(run_dir: str) -> Path:
    """The HF export of the latest run whose logs are under `run_dir` (see the config's loggers)."""
    exports = sorted(Path(run_dir).glob("**/hf_export"), key=lambda p: p.stat().st_mtime)
    if not exports:
        raise FileNotFoundError(f"no hf_export under {run_dir}: did the run finish?")
    return exports[-1]


def ensure_base(work: Path, sft_config: str) -> Path:
    from prefix_rft_pl.toy.model import save_tiny_model
    from prefix_rft_pl.toy.task import build_task

    if not (work / "task" / "train.jsonl").exists():
        build_task(work / "task")
    if not (work / "init" / "config.json").exists():
        save_tiny_model(work / "init")
    base = work / "base"
    if not (base / "config.json").exists():
        cli_main(["fit", "--config", sft_config, "--model.policy", str(work / "init"),
                  "--data.init_args.train_files", str(work / "task" / "base_sft.jsonl")])
        shutil.copytree(newest_export("runs/toy_sft_base"), base)
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="artifacts/toy", help="cache of task, init model and base")
    parser.add_argument("--sft-config", default="configs/toy/sft_base.yaml")
    parser.add_argument("--config", default="configs/toy/prefix_rft.yaml")
    parser.add_argument("--run-dir", default="runs/toy_prefix_rft", help="the config's logger save_dir")
    args, extra = parser.parse_known_args()
    start = time.time()
    work = Path(args.workdir)
    base = ensure_base(work, args.sft_config)
    splits = {"easy": str(work / "task" / "heldout_easy.jsonl"), "hard": str(work / "task" / "heldout_hard.jsonl")}
    before = {name: heldout_accuracy(str(base), f) for name, f in splits.items()}
    cli_main(["fit", "--config", args.config, "--model.policy", str(base),
              "--data.init_args.train_files", str(work / "task" / "train.jsonl"),
              "--data.init_args.val_files", splits["easy"], *extra])
    export = newest_export(args.run_dir)
    after = {name: heldout_accuracy(str(export), f) for name, f in splits.items()}
    print(f"\nToy Prefix-RFT ({time.time() - start:.0f} s). Held-out accuracy, greedy, math-verify graded:")
    print("| policy | easy (#) | hard (&) |\n|---|---|---|")
    print(f"| toy base ({base}) | {100 * before['easy']:.1f} | {100 * before['hard']:.1f} |")
    print(f"| Prefix-RFT ({export}) | {100 * after['easy']:.1f} | {100 * after['hard']:.1f} |")


if __name__ == "__main__":
    main()
