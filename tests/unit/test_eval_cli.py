"""The command line: every protocol field settable from YAML and overridable after it."""

from __future__ import annotations

from eval_harness.__main__ import build_parser, normalize_argv
from eval_harness.config import EvalConfig


def parse(argv: list[str]) -> EvalConfig:
    settings = build_parser().parse_args(normalize_argv(["run", *argv])).run.as_dict()
    settings.pop("config", None)
    settings.pop("trust_pickle", None)   # an option of the command, not of the protocol
    return EvalConfig(**settings)


def test_defaults_are_the_papers_protocol():
    cfg = parse(["--ckpt", "Qwen/Qwen2.5-Math-7B"])
    assert cfg.benchmarks == ["aime24", "aime25", "amc", "math500", "minerva", "olympiadbench"]
    assert (cfg.temperature, cfg.top_p, cfg.max_new_tokens) == (0.6, 1.0, 8192)
    assert [cfg.samples_for(b) for b in ("aime24", "aime25", "amc", "math500")] == [32, 32, 32, 1]


def test_yaml_then_command_line_overrides(tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text("temperature: 0.7\nnum_samples: {aime24: 4}\nmax_new_tokens: 2048\n")
    cfg = parse(["--config", str(config), "--ckpt", "m", "--data-dir", "/d", "--benchmarks", "aime24,math500",
                 "--top-p=0.95", "--max-new-tokens", "1024"])
    assert cfg.temperature == 0.7 and cfg.samples_for("aime24") == 4
    assert cfg.data_dir == "/d" and cfg.benchmarks == ["aime24", "math500"]
    assert cfg.top_p == 0.95 and cfg.max_new_tokens == 1024
    assert cfg.protocol()["max_new_tokens"] == 1024


def test_help_lists_reproduce_and_run_help_explains_options():
    top = build_parser().format_help()
    assert "reproduce" in top and "run" in top
    run_help = build_parser()._subcommands_action._name_parser_map["run"].format_help()
    assert "Output folder: samples_<benchmark>.jsonl" in run_help   # EvalConfig's field docstring
    assert "--trust_pickle" in run_help
