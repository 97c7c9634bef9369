"""SLURM profiles: validation (one clear line per bad field) and golden sbatch scripts (no cluster needed)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from slurm.profiles import (
    Profile,
    available_profiles,
    load_profile,
    mem_mb,
    submitit_parameters,
    time_minutes,
)
from slurm.sbatch import render_sbatch, sbatch_script
from suite.config import RunConfig
from suite.errors import InputError

GOLDEN = Path(__file__).parent / "golden"
FOLDER = "/results/exp/slurm/jobs/%j"


def test_shipped_profiles_load():
    assert {"local", "gpu-1node", "gpu-2node"} <= set(available_profiles())
    p2 = load_profile("gpu-2node")
    assert (p2.nodes, p2.gpus_per_node, p2.cpus_per_task, p2.mem, p2.time_min) == (2, 4, 32, "256G", 1440)
    assert load_profile("local").nodes == 1


@pytest.mark.parametrize(
    "text, minutes",
    [
        ("90", 90),
        (90, 90),
        ("01:30", 2),
        ("02:00:00", 120),
        ("1-00:00:00", 1440),
        ("1-12", 2160),
        ("0-00:00:30", 1),
        ("2-01:30", 2970),
    ],
)
def test_time_limits(text, minutes):
    assert time_minutes(text) == minutes


@pytest.mark.parametrize(
    "text, mb",
    [("64G", 65536), ("500M", 500), ("1T", 1048576), ("2GB", 2048), ("1.5G", 1536), ("0", 0), ("1024", 1024)],
)
def test_memory_sizes(text, mb):
    assert mem_mb(text) == mb


@pytest.mark.parametrize(
    "data, match",
    [
        ({"gpus": 4}, r"unknown profile key\(s\) gpus; valid keys: .*gpus_per_node"),
        ({"nodes": 0}, r"field nodes=0 must be >= 1"),
        ({"nodes": "two"}, r"field nodes='two' has the wrong type; expected an integer"),
        ({"cpus_per_task": 0}, r"field cpus_per_task=0 must be >= 1"),
        ({"gpus_per_node": -1}, r"field gpus_per_node=-1 must be >= 0"),
        ({"mem": "lots"}, r"field mem='lots' is not a memory size; write it like 64G"),
        ({"time": "soon"}, r"field time='soon' is not a positive SLURM time limit"),
        ({"time": "0"}, r"field time='0' is not a positive"),
        (
            {"time": "00:05:00", "signal_delay_s": 600},
            r"signal_delay_s=600 must be shorter than the time limit",
        ),
        ({"partition": "gpu a100"}, r"field partition='gpu a100' must be a non-empty word"),
        ({"extra_sbatch": ["--array=0-3"]}, r"sets --array, which the launcher sets itself"),
        ({"extra_sbatch": ["--gres=gpu:2", "-N 2"]}, r"sets -N; use the profile field nodes instead"),
        ({"extra_sbatch": ["exclusive"]}, r"is not an sbatch option; write it like '--exclusive'"),
        ({"extra_sbatch": "--mem=4G"}, r"sets --mem; use the profile field mem instead"),
    ],
)
def test_bad_profiles_one_clear_line(tmp_path, data, match):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=match) as e:
        load_profile(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_profile_key_given_twice_is_one_line_naming_both_lines(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("partition: debug\nnodes: 1\npartition: gpu\n")
    with pytest.raises(InputError) as e:
        load_profile(path)
    assert str(e.value) == (
        f"{path}: key 'partition' is given twice, on lines 1 and 3 (YAML would keep the second silently); "
        "keep one of them"
    )


def test_unknown_profile_name_lists_shipped():
    with pytest.raises(
        InputError, match=r"--profile 'nope': no such profile; available: gpu-1node, gpu-2node, local"
    ):
        load_profile("nope")


def test_array_mode_rejects_multinode():
    with pytest.raises(InputError, match=r"nodes=2 but --mode array runs one run per one-node array task"):
        submitit_parameters(load_profile("gpu-2node"), "array")
    with pytest.raises(InputError, match=r"--mode 'mpi' is not one of ray, array"):
        submitit_parameters(load_profile("local"), "mpi")


def test_parameters_2node_ray():
    params = submitit_parameters(load_profile("gpu-2node"), "ray", job_name="x")
    # submitit sees one task (one result file); the allocation has 2 nodes
    assert params["nodes"] == 1 and params["additional_parameters"]["nodes"] == 2
    assert params["srun_args"] == ["--nodes=1", "--ntasks=1", "--cpus-per-task=32"]
    assert params["time"] == 1440 and params["gpus_per_node"] == 4 and params["mem"] == "256G"
    assert params["additional_parameters"]["exclusive"] is True


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if not path.exists():  # first run writes it; review and commit it
        path.write_text(text)
        pytest.fail(f"golden file {path} was missing and has been written; review it and rerun")
    assert text == path.read_text(), f"sbatch script differs from {path}"


@pytest.mark.parametrize("profile", ["gpu-1node", "gpu-2node"])
def test_golden_sbatch_ray(profile: str):
    text = render_sbatch(
        load_profile(profile),
        "ray",
        folder=FOLDER,
        python="/opt/venv/bin/python",
        job_name="suite-exp-ray",
    )
    _check_golden(f"sbatch_ray_{profile}.sh", text)
    if profile == "gpu-2node":
        assert "#SBATCH --nodes=2\n" in text and "--nodes=1 --ntasks=1" in text


def test_golden_sbatch_array_local():
    text = render_sbatch(
        load_profile("local"),
        "array",
        folder=FOLDER,
        python="/opt/venv/bin/python",
        job_name="suite-exp-array-1",
        array_size=6,
        max_parallel=3,
        dependency="afterany:1234",
    )
    _check_golden("sbatch_array_local.sh", text)
    assert "#SBATCH --array=0-5%3\n" in text and "#SBATCH --dependency=afterany:1234\n" in text


def test_sbatch_text_is_what_submitit_writes(monkeypatch):
    """The record (slurm/sbatch/<job>.sh) and --dry-run render the script with submitit's private
    ``_make_sbatch_string`` and a copy of ``SlurmExecutor._submitit_command_str``: byte for byte what
    submitit's executor writes, for one job and for an array. Fails when submitit changes that private API."""
    import inspect

    from submitit.slurm import slurm as submitit_slurm

    from slurm.watch import WatchedSlurmExecutor

    params = set(inspect.signature(submitit_slurm._make_sbatch_string).parameters)
    assert {"command", "folder", "map_count", "dependency", "array_parallelism", "srun_args"} <= params
    monkeypatch.setattr(submitit_slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # no srun here
    for mode, map_count, golden in (("array", 6, "sbatch_array_local.sh"), ("ray", None, None)):
        ex = WatchedSlurmExecutor(folder=FOLDER, python="/opt/venv/bin/python")
        ex.update_parameters(
            **submitit_parameters(load_profile("local"), mode, job_name="suite-exp-array-1", max_parallel=3),
            **({"dependency": "afterany:1234"} if mode == "array" else {}),
        )
        if map_count:
            ex.parameters["map_count"] = map_count  # what submitit's array submission sets
        theirs = ex._make_submission_file_text(ex._submitit_command_str, "uid")
        ex.parameters.pop("map_count", None)
        ours = sbatch_script(dict(ex.parameters), folder=ex.folder, python=ex.python, map_count=map_count)
        assert ours == theirs
        if golden:
            _check_golden(golden, ours)


def test_profile_replace_validates():
    p = Profile(name="t")
    with pytest.raises(InputError, match="nodes=0"):
        p.replace(nodes=0)


# --------------------------------------------------------------------------------------------- launcher logic
def _three_level_plan(data: str, data_hash: str):
    """A plan of three chained runs (a -> b -> c): deeper than any space's, to check array chaining."""
    from suite.planner import Plan

    cfgs = [
        RunConfig.from_preset("smoke", method="fs", seed=s, data=data, data_hash=data_hash) for s in (1, 2, 3)
    ]
    ids = [c.run_id for c in cfgs]
    return Plan(
        runs=dict(zip(ids, cfgs, strict=True)),
        requested=[ids[2]],
        deps={ids[0]: [], ids[1]: [ids[0]], ids[2]: [ids[1]]},
    )


def test_array_mode_one_array_per_dependency_level(prepared_small, tmp_path, monkeypatch):
    """Array mode chains one array per level of the plan, each after the previous one; finished runs are
    skipped and their dependants move up a level."""
    import slurm.submit as submit_mod
    from search_spaces.expand import expand, resolve
    from suite.experiment_spec import ExperimentSpec

    spec = ExperimentSpec(data=str(prepared_small), out=str(tmp_path), labeled=(5,))
    real = expand(spec)
    plan = _three_level_plan(real.spec.data, real.data_hash)
    monkeypatch.setattr(
        submit_mod, "expand", lambda s, configs=None: dataclasses.replace(real, spec=resolve(s), plan=plan)
    )
    sub = submit_mod.submit(spec, load_profile("local"), "array", dry_run=True)
    a, b, c = list(plan.runs)
    assert sub.levels == [[a], [b], [c]] and sub.finished == []
    text = sub.dry_run_text
    assert (
        "# array 3: 1 task(s), runs that need phase 2, at most 2 at once, --dependency=afterany:<array 2>"
        in text
    )
    assert "#SBATCH --dependency='afterany:<array 1 job id>'\n" in text
    assert "#SBATCH --dependency='afterany:<array 2 job id>'\n" in text
    exp = real.exp
    exp.run(a).root.mkdir(parents=True)
    exp.run(a).summary.write_text("{}")
    sub = submit_mod.submit(spec, load_profile("local"), "array", dry_run=True)
    assert sub.levels == [[b], [c]] and sub.finished == [a]


def test_array_and_ray_options_refused_from_python(prepared_small, tmp_path):
    """The SLURM API refuses what the CLI refuses (one line, before anything is written)."""
    from slurm.submit import submit
    from suite.experiment_spec import ExperimentSpec

    spec = ExperimentSpec(data=str(prepared_small), out=str(tmp_path / "r"))
    local = load_profile("local")
    with pytest.raises(InputError, match=r"--gpus-per-trial/--workers-per-trial apply to --mode ray"):
        submit(spec.replace(gpus_per_trial=1.0, workers_per_trial=2), local, "array", dry_run=True)
    with pytest.raises(InputError, match=r"--max-parallel applies to --mode array"):
        submit(spec, local, "ray", dry_run=True, max_parallel=2)
    with pytest.raises(InputError, match=r"--max-parallel 0: must be a whole number >= 1"):
        submit(spec, local, "array", dry_run=True, max_parallel=0)
    with pytest.raises(InputError, match=r"address='auto': set by the allocation job"):
        submit(spec.replace(address="auto"), local, "ray", dry_run=True)
    with pytest.raises(InputError, match=r"explicit run configs need --mode array"):
        submit(spec, local, "ray", dry_run=True, configs=[])
    assert not (tmp_path / "r").exists()


def test_jobcomp_and_states(tmp_path):
    from slurm.watch import FINAL_STATES, normalise_state, read_jobcomp

    log = tmp_path / "jobcomp.txt"
    log.write_text(
        "JobId=7 UserId=root(0) Name=a JobState=CANCELLED StartTime=2026-01-01T00:00:01 "
        "EndTime=2026-01-01T00:00:09 NodeList=vm ExitCode=0:15 \n"
        "JobId=21 Name=b JobState=COMPLETED StartTime=x EndTime=y NodeList=vm ArrayJobId=19 "
        "ArrayTaskId=0 ExitCode=0:0 \n"
        "JobId=30 Name=c JobState=REQUEUED NodeList=vm ExitCode=0:0 \n"
        "JobId=30 Name=c JobState=COMPLETED NodeList=vm ExitCode=0:0 \n"
    )
    info = read_jobcomp(log)
    assert info["7"]["State"] == "CANCELLED" and info["7"]["End"] == "2026-01-01T00:00:09"
    assert info["19_0"]["State"] == "COMPLETED" and info["21"] is info["19_0"]
    assert info["30"]["State"] == "COMPLETED"  # the last line of a requeued job wins
    assert set(read_jobcomp(log, ["19_0"])) == {"21", "19_0"}
    assert normalise_state("CANCELLED by 0") == "CANCELLED" and normalise_state("CONFIGURING") == "RUNNING"
    assert "PREEMPTED" not in FINAL_STATES and "COMPLETED" in FINAL_STATES and "TIMEOUT" in FINAL_STATES


def test_dry_run_prints_script_and_layout(prepared_small, tmp_path, capsys):
    from suite.cli import main

    out = tmp_path / "results"
    rc = main(
        [
            "slurm",
            "submit",
            "--data",
            str(prepared_small),
            "--space",
            "smoke",
            "--labeled",
            "5",
            "--out",
            str(out),
            "--mode",
            "array",
            "--profile",
            "local",
            "--max-parallel",
            "1",
            "--dry-run",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "# array 1: 3 task(s), runs without prerequisites, at most 1 at once" in text
    assert "# array 2: 2 task(s), runs that need phase 1" in text
    assert "#SBATCH --array=0-2%1\n" in text and "#SBATCH --array=0-1%1\n" in text
    assert f"#SBATCH --output={out}/smoke-smoke/slurm/jobs/%A_%a/%A_%a_0_log.out" in text
    assert not out.exists()  # nothing written
    rc = main(
        [
            "slurm",
            "submit",
            "--data",
            str(prepared_small),
            "--out",
            str(out),
            "--mode",
            "ray",
            "--profile",
            "gpu-2node",
            "--dry-run",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "#SBATCH --nodes=2\n" in text and "1 worker(s) via srun --overlap" in text


def test_cli_rejects_bad_combinations(prepared_small, tmp_path, capsys):
    from suite.cli import main

    base = ["slurm", "submit", "--data", str(prepared_small), "--out", str(tmp_path), "--dry-run"]
    assert main(base + ["--mode", "array", "--profile", "gpu-2node"]) == 2
    assert "nodes=2 but --mode array" in capsys.readouterr().err
    assert main(base + ["--mode", "ray", "--max-parallel", "3"]) == 2
    assert "--max-parallel applies to --mode array" in capsys.readouterr().err
    assert main(base + ["--profile", "nope"]) == 2
    assert "no such profile" in capsys.readouterr().err


def test_ray_node_commands_one_host_two_nodes(monkeypatch):
    """Head and worker of a two-node Ray cluster on one host: srun steps that overlap the allocation, the
    worker joins the head's address, and the two raylets get disjoint worker-port ranges."""
    from slurm.ray_cluster import RayNodes

    monkeypatch.setenv("SUBMITIT_FOLDER", "/tmp/x/jobs/%j")
    nodes = RayNodes(["localhost", "localhost"], job_tag="7", port=6999, cpus=1)
    head, worker = nodes.command(0), nodes.command(1)
    assert nodes.address == "127.0.0.1:6999"
    for cmd in (head, worker):
        assert cmd[:7] == ["srun", "--overlap", "--mem=0", "-N1", "-n1", "-w", "localhost"]
        assert "--block" in cmd and "--num-cpus=1" in cmd
    assert "--head" in head and "--port=6999" in head and "--dashboard-host=127.0.0.1" in head
    assert "--address=127.0.0.1:6999" in worker and "--node-ip-address=127.0.0.1" in worker

    def worker_ports(cmd):
        opt = {
            a.split("=")[0]: int(a.split("=")[1])
            for a in cmd
            if a.startswith(("--min-worker", "--max-worker"))
        }
        return set(range(opt["--min-worker-port"], opt["--max-worker-port"] + 1))

    assert worker_ports(head) and worker_ports(worker) and not worker_ports(head) & worker_ports(worker)


def test_ray_node_processes_ignore_the_preemption_signal(monkeypatch):
    """SLURM sends USR2 to every process of every step: `ray start` and the daemons it starts must ignore it
    (its default action kills them, and the driver with them, before submitit can requeue)."""
    import subprocess
    import sys

    from slurm.ray_cluster import RayNodes

    monkeypatch.setenv("SUBMITIT_FOLDER", "/tmp/x/jobs/%j")
    cmd = RayNodes(["localhost"], job_tag="7", port=6999).command(0)
    wrapper = cmd[cmd.index("bash") : cmd.index("ray-node") + 1]
    probe = "import signal; print(signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN)"
    out = subprocess.run([*wrapper, sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert cmd[cmd.index("ray-node") + 1].endswith("ray") and cmd[cmd.index("ray-node") + 2] == "start"


def test_ray_start_env_drops_local_mode_settings(monkeypatch):
    """A job submitted from a process that ran a local Ray inherits RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0; with
    it, `ray start --address` on a worker node refuses to join (the once-unexplained two-node failure)."""
    from slurm.ray_cluster import cluster_env

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    env = cluster_env()
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in env and env["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.ray
def test_local_ray_does_not_leak_its_setting_to_child_processes(monkeypatch, tmp_path):
    """start_ray sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for its own Ray processes and puts the environment
    back afterwards, so sbatch / srun started later from this process do not inherit it."""
    import ray

    from suite.ray_glue.cluster import start_ray, stop_ray

    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    if ray.is_initialized():
        pytest.skip("a Ray session is already open in this process")
    try:
        start_ray(num_cpus=1, temp_dir=f"/tmp/sr-{os.getpid()}")
        assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ
    finally:
        stop_ray()
