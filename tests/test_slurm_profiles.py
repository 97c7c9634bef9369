"""SLURM profiles: validation (one clear line per bad field) and golden sbatch scripts (no cluster needed)."""

from __future__ import annotations

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
    [("90", 90), (90, 90), ("01:30", 2), ("02:00:00", 120), ("1-00:00:00", 1440), ("1-12", 2160),
     ("0-00:00:30", 1), ("2-01:30", 2970)],
)
def test_time_limits(text, minutes):
    assert time_minutes(text) == minutes


@pytest.mark.parametrize("text, mb", [("64G", 65536), ("500M", 500), ("1T", 1048576), ("2GB", 2048),
                                      ("1.5G", 1536), ("0", 0), ("1024", 1024)])
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
        ({"time": "00:05:00", "signal_delay_s": 600}, r"signal_delay_s=600 must be shorter than the time limit"),
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
    with pytest.raises(InputError, match=r"--profile 'nope': no such profile; available: gpu-1node, gpu-2node, local"):
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
    text = render_sbatch(load_profile("gpu-1node"), "ray", folder=FOLDER, python="/opt/venv/bin/python",
                         job_name="suite-exp-ray")
    _check_golden("sbatch_ray_gpu-1node.sh", text)


def test_golden_sbatch_ray_2node():
    text = render_sbatch(load_profile("gpu-2node"), "ray", folder=FOLDER, python="/opt/venv/bin/python",
                         job_name="suite-exp-ray")
    _check_golden("sbatch_ray_gpu-2node.sh", text)
    assert "#SBATCH --nodes=2\n" in text and "--nodes=1 --ntasks=1" in text


def test_golden_sbatch_array_local():
    text = render_sbatch(load_profile("local"), "array", folder=FOLDER, python="/opt/venv/bin/python",
                         job_name="suite-exp-array-1", array_size=6, max_parallel=3,
                         dependency="afterany:1234")
    _check_golden("sbatch_array_local.sh", text)
    assert "#SBATCH --array=0-5%3\n" in text and "#SBATCH --dependency=afterany:1234\n" in text


def test_profile_replace_validates():
    p = Profile(name="t")
    with pytest.raises(InputError, match="nodes=0"):
        p.replace(nodes=0)
