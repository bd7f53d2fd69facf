"""`python -m eval_harness run --ckpt PATH [--benchmarks aime24,math500] [--config YAML] ...`
`python -m eval_harness reproduce --model qwen2.5-math-7b [--plan] ...`: the whole table
(train every row, evaluate, assemble; see eval_harness/reproduce.py).

Every EvalConfig field is an option (see `run --help`); a YAML/JSON `--config` sets any of
them, and options after it override it. Lists may be given comma-separated.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from eval_harness.config import MOVED_OPTIONS, EvalConfig


def build_parser() -> ArgumentParser:
    run_parser = ArgumentParser(description="Evaluate a checkpoint on maths benchmarks (SPEC 4 protocol).")
    run_parser.add_argument("--config", action=ActionConfigFile, help="YAML or JSON with any of the options below.")
    run_parser.add_class_arguments(EvalConfig, fail_untyped=True)
    parser = ArgumentParser(prog="python -m eval_harness")
    subcommands = parser.add_subcommands()
    subcommands.add_subcommand("run", run_parser)
    return parser


def normalize_argv(argv: list[str]) -> list[str]:
    """`--data-dir` -> `--data_dir`; `--benchmarks a,b` -> `--benchmarks [a,b]` (jsonargparse's list syntax).
    An engine option from before the engine group is an error naming its new place."""
    out = []
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            key = key.replace("-", "_")
            if key in MOVED_OPTIONS:
                raise SystemExit(f"--{key} moved to --{MOVED_OPTIONS[key]}")
            if key == "engine" and (eq or (i + 1 < len(argv) and argv[i + 1] in ("hf", "vllm"))):
                raise SystemExit(f"--engine is a group now: --engine.kind {value or argv[i + 1]}")
            arg = "--" + key + eq + value
        out.append(arg)
    for i, arg in enumerate(out[:-1]):
        if arg == "--benchmarks" and not out[i + 1].startswith("["):
            out[i + 1] = "[" + out[i + 1] + "]"
    return out


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["reproduce"]:
        from eval_harness.reproduce import main as reproduce_main

        reproduce_main(argv[1:])
        return {}
    args = build_parser().parse_args(normalize_argv(argv))
    settings = args.run.as_dict()
    settings.pop("config", None)
    settings.pop("__path__", None)
    cfg = EvalConfig(**settings)
    from eval_harness.runner import run

    results = run(cfg)
    print(Path(cfg.out, "results.md").read_text())
    return results


if __name__ == "__main__":
    main()
