"""SLURM profiles: validation (one clear line per bad field) and golden sbatch scripts (no cluster needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm.profiles import (
    Profile,
    available_profiles,
    load_profile,
    mem_mb,
    render_sbatch,
    submitit_parameters,
    time_minutes,
)
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


def test_golden_sbatch_ray_1node():
    text = render_sbatch(
        load_profile("gpu-1node"),
        "ray",
        folder=FOLDER,
        python="/opt/venv/bin/python",
        job_name="suite-exp-ray",
    )
    _check_golden("sbatch_ray_gpu-1node.sh", text)


def test_golden_sbatch_ray_2node():
    text = render_sbatch(
        load_profile("gpu-2node"),
        "ray",
        folder=FOLDER,
        python="/opt/venv/bin/python",
        job_name="suite-exp-ray",
    )
    _check_golden("sbatch_ray_gpu-2node.sh", text)
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


def test_profile_replace_validates():
    p = Profile(name="t")
    with pytest.raises(InputError, match="nodes=0"):
        p.replace(nodes=0)


# --------------------------------------------------------------------------------------------- launcher logic
def test_plan_two_phases_and_skips_finished(tmp_path):
    from search_spaces import get_space
    from slurm.launch import plan
    from suite.paths import ExperimentPaths

    cfgs = get_space("smoke").configs("smoke", [0], labeled=[5], base={"data": "/d", "data_hash": "abc123"})
    exp = ExperimentPaths(tmp_path / "exp")
    pl = plan(cfgs, exp)
    kinds = lambda cs: sorted(c.method if c.stage == "segmenter" else "regressor" for c in cs)  # noqa: E731
    assert kinds(pl.phase1) == ["fs", "oracle", "regressor"] and pl.phase1[0].stage == "regressor"
    assert kinds(pl.phase2) == ["proposals", "proposed"] and pl.finished == []
    # prerequisites of phase 2 are exactly phase-1 runs
    assert {p.run_id for c in pl.phase2 for p in c.prerequisites()} <= {c.run_id for c in pl.phase1}
    fs = next(c for c in pl.phase1 if c.method == "fs")
    exp.run(fs.run_id).root.mkdir(parents=True)
    exp.run(fs.run_id).summary.write_text("{}")
    pl2 = plan(cfgs, exp)
    assert [c.run_id for c in pl2.finished] == [fs.run_id] and len(pl2.phase1) == 2 and len(pl2.phase2) == 2


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
    from slurm.launch import RayNodes

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

    from slurm.launch import RayNodes

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
    from slurm.launch import _cluster_env

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    env = _cluster_env()
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
