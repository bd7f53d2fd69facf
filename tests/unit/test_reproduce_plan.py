"""The reproduction harness without training: the plan of a paper model (commands, devices,
steps, the files they read), refusal of a run directory planned with other settings, the
learning-rate choice, dependency order and failure handling of the job runner, the table's
numbers, and the toy's splits as eval-harness benchmarks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from eval_harness.jobs import Job, execute
from eval_harness.reproduce import ROWS, Request, choose_lr, plan
from eval_harness.table import collect, kendall_tau, markdown

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the harness's commands name configs/ relative to the repository


def by_id(jobs):
    return {j.id: j for j in jobs}


def test_plan_of_the_7b_table_lists_every_row_with_its_devices_steps_and_inputs(tmp_path):
    jobs, notes = plan(Request("qwen2.5-math-7b", tmp_path, ROWS, [0]))
    ids = by_id(jobs)
    trained = len(ROWS) - 1
    # the 16k copy, the base's evaluation; a fit and an evaluation per row
    assert notes == [] and len(jobs) == 1 + 1 + 2 * trained
    assert [j.id for j in jobs if j.devices != 8] == ["prepare:qwen2.5-math-7b-ctx16384"]
    steps = {j.name: j.steps for j in jobs if j.kind == "fit"}
    # 500 rollout batches each (the config's max_steps); LUFFY, RL w/ SFT loss, ReLIFT, SRFT, HPT: 2
    # optimiser steps per batch, UFT 4
    assert steps == {"sft/s0": 500, "rft/s0": 500, "sft_rft/s0": 500, "rl_sft_loss/s0": 1000, "luffy/s0": 1000,
                     "relift/s0": 1000, "uft/s0": 2000, "prefix_rft/s0": 500, "chord/s0": 500, "srft/s0": 1000,
                     "hpt/s0": 1000}
    sft_rft = ids["fit:sft_rft/s0"]
    assert sft_rft.after == ["fit:sft/s0"]  # from the SFT export, which has the 16k config
    assert sft_rft.argv[:8] == ["python", "-m", "prefix_rft_pl", "fit", "--config",
                                "configs/qwen2.5-math-7b/prefix_rft.yaml", "--config", "configs/rows/rft.yaml"]
    assert sft_rft.argv[-2:] == ["--ckpt_path", "last"]  # a resubmitted fit resumes from its last checkpoint
    overlay = yaml.safe_load((tmp_path / "sft_rft" / "s0" / "overlay.yaml").read_text())
    assert overlay["model"]["policy"] == str(tmp_path / "sft" / "s0" / "train" / "hf_export")
    assert yaml.safe_load((tmp_path / "sft" / "s0" / "overlay.yaml").read_text())["model"]["optim"]["lr"] == 5e-5
    uft = yaml.safe_load((tmp_path / "uft" / "s0" / "overlay.yaml").read_text())
    assert uft["model"]["hints"]["steps"] == 300  # UFT: hints for 300 of 500 steps
    chord = yaml.safe_load((tmp_path / "chord" / "s0" / "overlay.yaml").read_text())["model"]["loss"]["hybrid"]
    assert chord["class_path"] == "prefix_rft_pl.baselines.hybrids.Chord" and chord["init_args"]["mu_peak"] == 0.5
    chord = chord["init_args"]
    assert (chord["mu_warmup_steps"], chord["mu_decay_steps"]) == (167, 333)  # Trinity's 200:400 over 500 batches
    callbacks = [c["class_path"] for c in uft["trainer"]["callbacks"]]
    assert "callbacks.VLLMWeightSync" in callbacks and "lightning.pytorch.callbacks.ModelCheckpoint" in callbacks
    schedule = yaml.safe_load((tmp_path / "prefix_rft" / "s0" / "overlay.yaml").read_text())["trainer"]["callbacks"][0]
    assert schedule["init_args"]["steps"] == 500
    evaluation = yaml.safe_load((tmp_path / "prefix_rft" / "s0" / "eval.yaml").read_text())
    assert evaluation["template"] == "qwen_math" and evaluation["data_parallel_size"] == 8
    assert evaluation["ckpt"] == str(tmp_path / "prefix_rft" / "s0" / "train" / "hf_export")
    assert ids["eval:base"].argv[-1] == str(tmp_path / "base" / "eval.yaml")
    assert not list(tmp_path.glob("**/train"))  # planning runs nothing


def test_qwen_math_plans_start_from_one_context_extended_copy(tmp_path):
    """Qwen2.5-Math ships 4,096 positions: every fit from the base model and the base's evaluation
    use the 16k copy the plan's first job writes (absolute paths); LLaMA and --policy need none."""
    jobs, _ = plan(Request("qwen2.5-math-7b", tmp_path, ["base", "sft", "prefix_rft", "sft_rft"], [0]))
    ids = by_id(jobs)
    prepare = jobs[0]
    copy = tmp_path / "models" / "qwen2.5-math-7b-ctx16384"
    assert prepare.id == "prepare:qwen2.5-math-7b-ctx16384" and prepare.devices == 0
    assert prepare.argv == ["python", "-m", "prefix_rft_pl.extend_context", "Qwen/Qwen2.5-Math-7B", str(copy),
                            "--max-position-embeddings", "16384", "--rope-theta", "40000"]
    assert prepare.marker == copy / "prepared.json"
    for name in ("sft/s0", "prefix_rft/s0"):
        assert ids[f"fit:{name}"].after == [prepare.id]
        assert yaml.safe_load((tmp_path / name / "overlay.yaml").read_text())["model"]["policy"] == str(copy)
    assert ids["eval:base"].after == [prepare.id]
    assert yaml.safe_load((tmp_path / "base" / "eval.yaml").read_text())["ckpt"] == str(copy)
    assert "prepare:qwen2.5-math-7b-ctx16384" not in ids["fit:sft_rft/s0"].after  # from the SFT export
    assert not copy.exists()  # planning writes no copy

    assert not [j for j in plan(Request("llama-3.1-8b", tmp_path / "llama", ["sft"], [0]))[0] if j.kind == "prepare"]
    own = plan(Request("qwen2.5-math-1.5b", tmp_path / "own", ["sft"], [0], policy="/models/mine"))[0]
    assert [j.kind for j in own] == ["fit", "eval"]


def test_llama_protocol_and_a_row_subset(tmp_path):
    jobs, _ = plan(Request("llama-3.1-8b", tmp_path, ["sft_rft"], [0, 1]))
    # SFT+RFT needs the SFT fits, not their evaluations
    assert sorted(j.id for j in jobs) == ["eval:sft_rft/s0", "eval:sft_rft/s1", "fit:sft/s0", "fit:sft/s1",
                                          "fit:sft_rft/s0", "fit:sft_rft/s1"]
    assert yaml.safe_load((tmp_path / "sft_rft" / "s1" / "eval.yaml").read_text())["max_new_tokens"] == 2048


def test_one_rate_for_every_row_starts_sft_rft_from_the_sft_run_at_that_rate(tmp_path):
    jobs, notes = plan(Request("qwen2.5-math-7b", tmp_path, ["sft_rft"], [0], lrs=[1e-6]))
    ids = by_id(jobs)
    assert notes == [] and sorted(ids) == ["eval:sft_rft/lr1e-06_s0", "fit:sft/lr1e-06_s0", "fit:sft_rft/lr1e-06_s0",
                                           "prepare:qwen2.5-math-7b-ctx16384"]
    assert ids["fit:sft_rft/lr1e-06_s0"].after == ["fit:sft/lr1e-06_s0"]  # a job of the plan
    overlay = yaml.safe_load((tmp_path / "sft_rft" / "lr1e-06_s0" / "overlay.yaml").read_text())
    assert overlay["model"]["policy"] == str(tmp_path / "sft" / "lr1e-06_s0" / "train" / "hf_export")
    assert not (tmp_path / "sft" / "s0").exists()  # no second SFT run planned at the row's own rate


def test_a_run_directory_planned_with_other_settings_is_refused(tmp_path):
    plan(Request("qwen2.5-math-1.5b", tmp_path, ["rft"], [0], steps=10))
    plan(Request("qwen2.5-math-1.5b", tmp_path, ["rft"], [0], steps=10))  # the same plan again: fine
    with pytest.raises(ValueError, match=r"rft/s0/overlay.yaml was written for other settings \(keys \['trainer'\]"):
        plan(Request("qwen2.5-math-1.5b", tmp_path, ["rft"], [0], steps=20))
    with pytest.raises(ValueError, match=r"eval.yaml was written for other settings \(keys \['temperature'\]"):
        plan(Request("qwen2.5-math-1.5b", tmp_path, ["rft"], [0], steps=10, eval_overrides={"temperature": 1.0}))


def test_choose_lr_takes_the_best_mean_over_seeds_once_all_are_scored():
    grid = [1e-4, 3e-4, 1e-3]
    # means 20, 25, 25: the tie goes to the first grid value
    assert choose_lr({1e-4: [10.0, 30.0], 3e-4: [20.0, 30.0], 1e-3: [25.0, 25.0]}, grid) == 3e-4
    assert choose_lr({1e-4: [10.0, 30.0], 3e-4: [20.0, None], 1e-3: [25.0, 25.0]}, grid) is None


def fake_results(path: Path, protocol: dict, scores: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": protocol, "benchmarks": {
        name: {"score": s, "pass_at_k": {"1": s}} for name, s in scores.items()}}))


def test_a_grid_plans_sft_rft_and_the_reported_evaluations_once_rates_are_chosen(tmp_path):
    req = Request("toy", tmp_path, ["sft", "sft_rft"], [0, 1], steps=2, lrs=[1e-4, 1e-3], toy_task=tmp_path / "task")
    jobs, notes = plan(req)
    assert len(notes) == 3 and {j.kind for j in jobs if "sft_rft" in j.name} == set()
    selections = {j.name: j for j in jobs if j.name.endswith("/select")}
    val = {"sft/lr0.0001_s0/select": 40.0, "sft/lr0.0001_s1/select": 20.0,   # mean 30
           "sft/lr0.001_s0/select": 35.0, "sft/lr0.001_s1/select": 35.0}     # mean 35: chosen
    for name, score in val.items():
        fake_results(selections[name].marker, selections[name].protocol, {"val": score})
    jobs, notes = plan(req)
    ids = by_id(jobs)
    assert ids["fit:sft_rft/lr0.0001_s1_from_sft_lr0.001"].after == ["fit:sft/lr0.001_s1"]
    assert ids["eval:sft/lr0.001_s0"].after == ["eval:sft/lr0.001_s0/select"]
    assert "eval:sft/lr0.0001_s0" not in ids  # only the chosen rate is evaluated on the reported splits
    assert len(notes) == 1 and notes[0].startswith("sft_rft")


def test_execute_runs_in_dependency_order_and_skips_the_dependants_of_a_failure(tmp_path):
    def job(name, code, after=()):
        marker = tmp_path / name / "done"
        script = f"import pathlib, sys; p = pathlib.Path({str(marker)!r}); " \
                 f"p.parent.mkdir(parents=True, exist_ok=True); " \
                 f"assert all(pathlib.Path({str(tmp_path)!r}, a.split(':')[1], 'done').exists() " \
                 f"for a in {list(after)!r}); " \
                 f"p.touch() if {code} == 0 else sys.exit({code})"
        return Job("fit", name, ["python", "-c", script], 1, marker, after=list(after))

    jobs = [job("c", 0, ["fit:b"]), job("b", 0, ["fit:a"]), job("a", 0), job("bad", 3),
            job("after_bad", 0, ["fit:bad"])]
    ran, failed = execute(jobs, tmp_path, workers=2)
    assert ran == 4 and failed == ["fit:bad", "fit:after_bad"]
    assert [json.loads(line)["job"] for line in (tmp_path / "jobs.jsonl").read_text().splitlines()].count("fit:a") == 1
    ran, failed = execute(jobs, tmp_path, workers=2, failed=["fit:bad"])  # done jobs are not run again
    assert ran == 0 and "fit:after_bad" in failed


def test_table_means_spreads_and_the_published_column(tmp_path):
    jobs = []
    for seed, (aime, math) in enumerate([(30.0, 80.0), (40.0, 90.0)]):
        marker = tmp_path / f"s{seed}" / "eval" / "results.json"
        fake_results(marker, {}, {"aime24": aime, "math500": math})
        jobs.append(Job("eval", f"prefix_rft/s{seed}", [], 1, marker,
                        meta={"row": "prefix_rft", "seed": seed, "lr": None}))
    data = collect(jobs, ("aime24", "math500"), ("aime24", "math500"))
    row = data["rows"]["prefix_rft"]
    assert row["mean"] == {"aime24": 35.0, "math500": 85.0, "average": 60.0}
    assert row["sd"]["average"] == pytest.approx(7.0710678)  # averages 55 and 65: sd = 10 / sqrt(2)
    text = markdown({"model": "qwen2.5-math-7b", "command": "c", "reported": ["aime24", "math500"],
                     "average_over": ["aime24", "math500"], "seeds": [0, 1], "grid": {}, **data,
                     "published": {"prefix_rft": {"average": 51.8}}})
    assert "| prefix_rft | - | 2 | 35.0 ± 7.1 | 85.0 ± 7.1 | 60.0 ± 7.1 | 51.8 |" in text


def test_kendall_tau_by_hand():
    assert kendall_tau(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert kendall_tau(["a", "b", "c"], ["c", "b", "a"]) == -1.0
    assert kendall_tau(["a", "b", "c"], ["b", "a", "c"]) == pytest.approx(1 / 3)  # 2 of 3 pairs agree


def test_toy_splits_are_eval_harness_benchmarks(toy_task_files):
    from eval_harness.benchmarks import load_benchmark
    from prefix_rft_pl.toy.task import write_eval_splits

    task = Path(toy_task_files["train"]).parent
    files = write_eval_splits(task)
    problems = {split: load_benchmark(str(path)) for split, path in files.items()}
    # the fixture's task has 20 held-out problems per op: val (100-199) is empty there
    assert {s: len(p) for s, p in problems.items()} == {"val": 0, "easy": 20, "hard": 20, "ood_easy": 100,
                                                        "ood_hard": 100}
    hard = problems["hard"][0]
    assert "&" in hard.problem and hard.answers == [
        json.loads((task / "heldout_hard.jsonl").open().readline())["answer"]
    ]
    assert all(len(p.problem) == 5 for p in problems["ood_easy"])  # 2-digit operands: "12#34"
    assert len({p.id for s in problems.values() for p in s}) == sum(len(p) for p in problems.values())


def test_the_cli_prints_the_plan(tmp_path, capsys):
    from eval_harness.__main__ import main

    main(["reproduce", "--model", "qwen2.5-math-7b", "--rows", "prefix_rft", "--out", str(tmp_path), "--plan"])
    out = capsys.readouterr().out
    assert "[prepare] qwen2.5-math-7b-ctx16384  devices=0  after=-" in out
    assert "[fit] prefix_rft/s0  devices=8  steps=500  after=prepare:qwen2.5-math-7b-ctx16384" in out
    assert f"python -m eval_harness run --config {tmp_path}/prefix_rft/s0/eval.yaml" in out
    assert sys.executable not in out  # commands a scheduler can run elsewhere


def test_an_evaluation_is_done_when_its_results_json_has_the_protocol(tmp_path):
    # results.json stores the whole config (the engine as a group): the job's protocol must match it
    from dataclasses import asdict

    from eval_harness.config import EvalConfig
    from prefix_rft_pl.config import Engine

    cfg = EvalConfig(ckpt="m", benchmarks=["aime24"], engine=Engine(kind="hf", device="cpu"), limit=2)
    marker = tmp_path / "results.json"
    marker.write_text(json.dumps({"config": asdict(cfg), "benchmarks": {"aime24": {"score": 0.5}}}))
    assert Job("eval", "e", [], 1, marker, protocol=cfg.protocol()).done()
    other = EvalConfig(ckpt="m", benchmarks=["aime24"], engine=Engine(kind="vllm"), limit=2)
    assert not Job("eval", "e", [], 1, marker, protocol=other.protocol()).done()
