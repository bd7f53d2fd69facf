"""The SLURM batch scripts and decisions, without a cluster: the resources of a fit and of an
evaluation, absolute paths, the resume line, dependency order, when evaluation shards go
through srun, and which SLURM task reads which shard spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_harness.jobs import Job
from eval_harness.launcher import ShardError, srun_tasks
from eval_harness.reproduce import fit_devices
from eval_harness.shard import spec_path
from eval_harness.slurm import (
    SlurmOptions,
    absolute_argv,
    ordered,
    resources,
    script,
    write_scripts,
)


def fit(tmp_path: Path, name: str = "sft/s0", devices: int = 8, after=()) -> Job:
    run = tmp_path / name
    return Job("fit", name, ["python", "-m", "prefix_rft_pl", "fit", "--config", "configs/toy/prefix_rft.yaml",
                             "--ckpt_path", "last"], devices, run / "train" / "hf_export" / "export_complete.json",
               after=list(after))


def evaluation(tmp_path: Path, name: str = "sft/s0", devices: int = 8, after=("fit:sft/s0",)) -> Job:
    run = tmp_path / name
    return Job("eval", name, ["python", "-m", "eval_harness", "run", "--config", str(run / "eval.yaml")], devices,
               run / "eval" / "results.json", after=list(after))


def test_a_fit_is_one_srun_task_per_device_with_the_preemption_signal(tmp_path):
    opts = SlurmOptions(nodes=2, gpus_per_node=4, workdir=str(Path.cwd()))
    assert resources(fit(tmp_path), opts) == ["--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4",
                                              "--signal=USR1@90"]
    with pytest.raises(ValueError, match=r"\[fit\] sft/s0: 8 devices do not split evenly over --nodes 3"):
        resources(fit(tmp_path), SlurmOptions(nodes=3))


def test_an_evaluation_is_one_node_one_task_per_device_without_srun(tmp_path):
    opts = SlurmOptions(gpus_per_node=8, partition="gpu", time="4:00:00", sbatch=("--qos=high",))
    text = script(evaluation(tmp_path, devices=8), opts)
    assert "#SBATCH --nodes=1\n#SBATCH --ntasks=8\n#SBATCH --gpus-per-node=8\n" in text
    assert "#SBATCH --partition=gpu\n#SBATCH --time=4:00:00\n#SBATCH --qos=high\n" in text
    assert "srun" not in text and "--signal" not in text  # the evaluation starts its own srun step
    assert f"#SBATCH --output={tmp_path}/sft/s0/eval.log\n#SBATCH --open-mode=append\n#SBATCH --requeue\n" in text


def test_a_preparation_is_one_task_without_gpus_or_srun_logged_beside_its_copy(tmp_path):
    copy = tmp_path / "models" / "qwen2.5-math-7b-ctx16384"
    job = Job("prepare", copy.name, ["python", "-m", "prefix_rft_pl.extend_context", "Qwen/Qwen2.5-Math-7B", str(copy)],
              0, copy / "prepared.json")
    text = script(job, SlurmOptions(gpus_per_node=8, python="/venv/bin/python"))
    assert "#SBATCH --nodes=1\n#SBATCH --ntasks=1\n" in text and "gpus" not in text and "srun" not in text
    assert f"#SBATCH --output={tmp_path}/models/qwen2.5-math-7b-ctx16384.log\n" in text
    assert text.endswith(f"/venv/bin/python -m prefix_rft_pl.extend_context Qwen/Qwen2.5-Math-7B {copy}\n")


def test_a_fit_script_has_absolute_paths_and_resumes_from_its_last_checkpoint(tmp_path):
    text = script(fit(tmp_path, devices=2), SlurmOptions(python="/venv/bin/python", workdir=str(Path.cwd())))
    assert f"cd {Path.cwd()}\n" in text
    assert (f"srun --kill-on-bad-exit=1 /venv/bin/python -m prefix_rft_pl fit --config "
            f"{Path.cwd()}/configs/toy/prefix_rft.yaml --ckpt_path last\n") in text  # a requeued run resumes
    assert "#SBATCH --ntasks-per-node=2\n" in text and "#SBATCH --requeue\n" in text


def test_absolute_argv_rewrites_existing_relative_paths_only(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text("")
    argv = ["-m", "configs", "--config", "configs/a.yaml", "--x=configs/a.yaml", "configs/missing.yaml", "last"]
    assert absolute_argv(argv, tmp_path) == ["-m", "configs", "--config", f"{tmp_path}/configs/a.yaml",
                                             f"--x={tmp_path}/configs/a.yaml", "configs/missing.yaml", "last"]


def test_ordered_puts_every_job_after_those_it_needs(tmp_path):
    jobs = [evaluation(tmp_path, "b/s0", after=["fit:b/s0"]), fit(tmp_path, "b/s0", after=["fit:a/s0"]),
            fit(tmp_path, "a/s0")]
    assert [j.id for j in ordered(jobs)] == ["fit:a/s0", "fit:b/s0", "eval:b/s0"]
    with pytest.raises(ValueError, match="circle"):
        ordered([fit(tmp_path, "a/s0", after=["fit:b/s0"]), fit(tmp_path, "b/s0", after=["fit:a/s0"])])


def test_write_scripts_chains_afterok_and_skips_done_jobs(tmp_path):
    done = fit(tmp_path, "sft/s0")
    done.marker.parent.mkdir(parents=True)
    done.marker.write_text("{}")
    rft = fit(tmp_path, "rft/s0", after=["fit:sft/s0"])
    jobs = [done, rft, evaluation(tmp_path, "rft/s0", after=["fit:rft/s0"])]
    lines = write_scripts(jobs, tmp_path / "scripts", SlurmOptions()).read_text().splitlines()
    assert lines[3:] == [f"j1=$(sbatch --parsable {tmp_path}/scripts/fit-rft_s0.sbatch)  # fit:rft/s0",
                         (f"j2=$(sbatch --parsable --dependency=afterok:$j1 --kill-on-invalid-dep=yes "
                          f"{tmp_path}/scripts/eval-rft_s0.sbatch)  # eval:rft/s0")]
    assert (tmp_path / "scripts" / "fit-sft_s0.sbatch").is_file()  # written, not submitted


def test_shards_go_through_srun_only_in_the_batch_step_of_a_multi_task_job():
    batch = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"}
    assert srun_tasks(batch, 2) and not srun_tasks({}, 2)
    assert not srun_tasks({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, 2)  # a one-task job: local processes
    with pytest.raises(ShardError, match="needs 4 SLURM tasks; job 7 has 2"):
        srun_tasks(batch, 4)
    with pytest.raises(ShardError, match="start it once per job"):
        srun_tasks({**batch, "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}, 2)


def test_a_slurm_task_reads_the_spec_of_its_rank(tmp_path):
    for rank in (0, 1):
        (tmp_path / f"shard{rank}.json").write_text(json.dumps({"num_shards": 2}))
    assert spec_path(str(tmp_path), {"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}) == tmp_path / "shard1.json"
    assert spec_path(str(tmp_path / "shard0.json"), {}) == tmp_path / "shard0.json"
    with pytest.raises(SystemExit, match="planned for 2 shards, but this srun step has SLURM_NTASKS=3"):
        spec_path(str(tmp_path), {"SLURM_PROCID": "0", "SLURM_NTASKS": "3"})


def test_fit_devices_follow_the_fit_arguments():
    base = {"trainer": {"devices": 8, "num_nodes": 1}}
    assert fit_devices(base) == 8
    assert fit_devices(base, ["--trainer.num_nodes=2"]) == 16
    assert fit_devices({"trainer": {"devices": 1}}, ["--trainer.devices=2", "--model.x=3"]) == 2
