"""`python -m eval_harness run --ckpt PATH [--benchmarks aime24,math500] [--config YAML] ...`
`python -m eval_harness reproduce --model qwen2.5-math-7b [--plan] ...`: the whole table
(train every row, evaluate, assemble; see eval_harness/reproduce.py).

Every EvalConfig field is an option (see `run --help`); a YAML/JSON `--config` sets any of
them, and options after it override it. Lists may be given comma-separated.
`run --trust_pickle` loads a legacy checkpoint that holds arbitrary pickled objects (only a
file you made yourself: unpickling can run code; see docs/grading.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

from eval_harness.config import MOVED_OPTIONS, EvalConfig

REPRODUCE_HELP = ("Reproduce the paper's table: train every row, evaluate, assemble "
                  "(python -m eval_harness reproduce --help for its options).")


def build_parser() -> ArgumentParser:
    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # EvalConfig's field docstrings as help
    run_parser = ArgumentParser(description="Evaluate a checkpoint on maths benchmarks (SPEC 4 protocol).")
    run_parser.add_argument("--config", action=ActionConfigFile, help="YAML or JSON with any of the options below.")
    run_parser.add_class_arguments(EvalConfig, fail_untyped=True)
    run_parser.add_argument("--trust_pickle", type=bool, default=False,
                            help="Unpickle a legacy checkpoint with weights_only=False. Only for a file you made: "
                                 "unpickling can run code (also PREFIX_RFT_TRUST_PICKLE=1).")
    parser = ArgumentParser(prog="python -m eval_harness")
    subcommands = parser.add_subcommands()
    subcommands.add_subcommand("run", run_parser, help="Evaluate one checkpoint (run --help for every option).")
    subcommands.add_subcommand("reproduce", ArgumentParser(description=REPRODUCE_HELP), help=REPRODUCE_HELP)
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
    if settings.pop("trust_pickle", False):
        os.environ["PREFIX_RFT_TRUST_PICKLE"] = "1"  # explicit opt-in; data-parallel shards inherit it
    cfg = EvalConfig(**settings)
    from eval_harness.runner import run

    results = run(cfg)
    print(Path(cfg.out, "results.md").read_text())
    return results


if __name__ == "__main__":
    main()
