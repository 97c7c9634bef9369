"""Integration tests against a real SLURM (``slurm/testing/start-local-cluster.sh``): nothing is mocked.

Skipped, with the reason, when no cluster answers ``sinfo``. ``.ci/run`` starts the cluster in the background
while ruff and the first tests run; the ``cluster`` fixture waits for it (``$SUITE_SLURM_DIR/start.status``).

Runs use the ``smoke`` preset made tinier still (one epoch, 32x32, one thread) so that the whole module takes
a few minutes on 2 cores (about 6 minutes for the module on the quiet reference machine).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm]

TINY = ("seg_epochs=1", "reg_epochs=1", "threads=1", "image_size=32", "reg_aug_copies=1")
SLURM_DIR = Path(os.environ.get("SUITE_SLURM_DIR", "/tmp/suite-slurm"))


def _cluster_problem() -> str | None:
    status = SLURM_DIR / "start.status"
    deadline = time.time() + float(os.environ.get("SUITE_SLURM_START_WAIT_S", "240"))
    while status.exists() and status.read_text().strip() == "starting" and time.time() < deadline:
        time.sleep(1)  # .ci/run starts the cluster in the background
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found); start one with slurm/testing/start-local-cluster.sh"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return f"sinfo failed ({e})"
    states = r.stdout.split()
    if r.returncode != 0 or not any(s.rstrip("*~#") in ("idle", "mix", "alloc") for s in states):
        why = status.read_text().strip() if status.exists() else ""
        return (
            f"no usable SLURM node (sinfo rc={r.returncode} {r.stderr.strip()[:100]} {states}) {why}".strip()
        )
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = _cluster_problem()
    if problem:
        pytest.skip(problem)
    import slurm.watch as watch

    watch.WatchedSlurmJob.watcher._delay_s = 2  # poll the queue every 2 s in tests


@pytest.fixture(scope="module")
def data(cluster, request) -> Path:
    """The shared prepared phantom (``prepared_small``), built only once a cluster answered (a session fixture
    requested directly would be built before the module's skip)."""
    return request.getfixturevalue("prepared_small")


def _profile(**changes):
    from slurm.profiles import load_profile

    return load_profile("local").replace(**{"cpus_per_task": 1, "time": "00:30:00", **changes})


def _spec(exp: Path, data: Path, **kw):
    from suite.experiment_spec import ExperimentSpec

    kw.setdefault("overrides", TINY)
    return ExperimentSpec(
        data=str(data),
        out=str(exp.parent),
        experiment=exp.name,
        space="smoke",
        seeds=(0,),
        labeled=(5,),
        **kw,
    )


def _config(data: Path, method: str = "fs", **changes):
    from suite.config import RunConfig
    from suite.data.dataset import PreparedData

    base = {k: v for k, v in (o.split("=") for o in TINY)}
    base.update({k: str(v) for k, v in changes.items()})
    cfg = RunConfig.from_preset(
        "smoke",
        method=method,
        n_labeled=5,
        seed=0,
        data=str(data),
        data_hash=PreparedData.open(data).data_hash,
    )
    return cfg.with_overrides([f"{k}={v}" for k, v in base.items()])


def _metrics_wo_time(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if "epoch_time_s" not in ln]


def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _result(job):
    """``job.result()``; on failure the assertion carries the tail of the job's logs (CI keeps no files)."""
    try:
        return job.result()
    except Exception as e:  # re-raised with the logs
        tails = []
        for path in (job.paths.stderr, job.paths.stdout):
            if Path(path).exists():
                tails.append(f"--- {path} (tail)\n" + "\n".join(Path(path).read_text().splitlines()[-40:]))
        raise AssertionError(f"{type(e).__name__}: {e}\n" + "\n".join(tails)) from e


def _job_state(job_id: str) -> str:
    from slurm.watch import read_squeue

    return read_squeue([job_id]).get(job_id, {}).get("State", "")


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.timeout(240)
def test_killed_job_reported_failed_within_seconds(data, tmp_path):
    """scancel (no checkpoint, no result file): the caller learns within seconds, status names the logs."""
    from slurm.status import collect, format_status
    from slurm.submit import submit, wait
    from suite.paths import ExperimentPaths

    exp = ExperimentPaths(tmp_path / "killed")
    cfg = _config(data, "fs", seg_epochs=200)
    sub = submit(_spec(exp.root, data), _profile(), "array", configs=[cfg])
    (job,) = sub.jobs
    _wait_for(lambda: exp.run(cfg.run_id).config.exists(), 150, "the run to start in the job")
    t0 = time.time()
    subprocess.run(["scancel", job.job_id], check=True)
    (out,) = wait(sub, timeout_s=60)
    elapsed = time.time() - t0
    assert not out.ok and out.run_id == cfg.run_id
    assert "CANCELLED" in out.error, out.error
    assert elapsed < 20, f"a cancelled job took {elapsed:.1f}s to be reported"
    st = collect(exp.root)
    run = st.runs[cfg.run_id]
    assert run.state == "failed" and "CANCELLED" in run.job_state
    assert any(lg.endswith("_log.err") and Path(lg).exists() for lg in run.logs)
    text = format_status(st)
    assert "1 failed" in text and cfg.run_id in text and "log:" in text


@pytest.fixture(scope="module")
def array_experiment(data, tmp_path_factory):
    """The smoke grid (n=5: 4 methods + the regressor) through the job-array mode."""
    from slurm.submit import submit, wait
    from suite.paths import ExperimentPaths

    exp = ExperimentPaths(tmp_path_factory.mktemp("array") / "smoke-smoke")
    spec = _spec(exp.root, data)
    t0 = time.time()
    sub = submit(spec, _profile(), "array", max_parallel=2)
    outcomes = wait(sub, timeout_s=900)
    return {"exp": exp, "spec": spec, "sub": sub, "outcomes": outcomes, "wall_s": time.time() - t0}


@pytest.mark.timeout(1000)
def test_array_mode_smoke_grid(array_experiment, tmp_path):
    from search_spaces.expand import expand
    from slurm.ledger import read_ledger
    from slurm.submit import submit
    from slurm.watch import read_jobcomp
    from suite.stages.runner import execute

    exp, spec = array_experiment["exp"], array_experiment["spec"]
    assert all(o.ok for o in array_experiment["outcomes"]), array_experiment["outcomes"]
    # the same run directories as `suite tune` (the plan: requested runs + prerequisites), finished
    expected = set(expand(spec).plan.runs)
    assert {p.run_id for p in exp.all_runs()} == expected and len(expected) == 5
    assert all(p.status() == "finished" for p in exp.all_runs())
    # one array per dependency level: independent runs first, dependants after with afterany
    ledger = read_ledger(exp)
    assert [s["phase"] for s in ledger] == ["1", "2"]
    first, second = ledger
    assert second["dependency"] == f"afterany:{first['job_id']}"
    assert {t["run_id"].split("-")[1] for t in first["tasks"]} == {"n5", "fs", "oracle"}
    assert {t["run_id"].split("-")[1] for t in second["tasks"]} == {"proposed", "proposals"}
    text = Path(first["sbatch"]).read_text()
    assert "#SBATCH --array=0-2%2\n" in text and "submitit.core._submit" in text
    assert "#SBATCH --dependency=afterany:" in Path(second["sbatch"]).read_text()
    # phase 2 started only after every phase-1 task ended (the completion log's times)
    ids = [t["job_id"] for t in first["tasks"] + second["tasks"]]
    # slurmctld appends a job's completion record a moment after the job's result file appears
    _wait_for(
        lambda: all(i in read_jobcomp(SLURM_DIR / "jobcomp.txt") for i in ids), 30, "the completion log"
    )
    comp = read_jobcomp(SLURM_DIR / "jobcomp.txt")
    ends = [comp[t["job_id"]]["End"] for t in first["tasks"]]
    starts = [comp[t["job_id"]]["Start"] for t in second["tasks"]]
    assert min(starts) >= max(ends), (starts, ends)
    # the array's FS run equals a local standalone run of the same config, bit for bit (except wall times)
    fs_id = next(r for r in expected if r.startswith("seg-fs-"))
    local = execute(_cfg_from_run(exp.run(fs_id).config), tmp_path / "local")
    assert _metrics_wo_time(local.metrics) == _metrics_wo_time(exp.run(fs_id).metrics)
    # re-submitting finds every run finished: nothing is submitted again
    again = submit(spec, _profile(), "array")
    assert again.jobs == [] and len(again.finished) == 5
    # experiment.json: the array mode's record, with the cohort
    doc = json.loads(exp.experiment.read_text())
    assert (
        doc["schema_version"] == 2 and doc["launcher"] == "slurm-array" and doc["cohort"]["n_patients"] == 30
    )
    assert set(doc["runs"]) == expected and len(doc["launches"]) == 1  # the no-op resubmission is none


def _cfg_from_run(config_path: Path):
    from suite.config import RunConfig

    return RunConfig.from_config_json(json.loads(config_path.read_text()), source=str(config_path))


# Once (2026-11-28, a full-suite rehearsal) the second `ray start` exited three times in a row here, cause not
# recorded; RayNodes now gives each node its own worker-port range, retries 5 times with back-off after
# killing the failed try, and logs the tail of the failed node's log, so a recurrence says why.
@pytest.mark.timeout(600)
@pytest.mark.ray
def test_ray_mode_two_node_path(array_experiment, data, tmp_path):
    """The multi-node path on one host: the job starts a Ray head and a worker as two ``srun --overlap``
    steps (own ports and temp dirs), runs the Tune driver against them and stops them. The grid's other runs
    are copied in finished: the driver must train only the FS run, identical to the array's."""
    from slurm.submit import submit, wait
    from suite.paths import ExperimentPaths

    src = array_experiment["exp"]
    exp = ExperimentPaths(tmp_path / "smoke-smoke")
    shutil.copytree(src.runs_dir, exp.runs_dir)
    fs_id = next(p.run_id for p in exp.all_runs() if p.run_id.startswith("seg-fs-"))
    shutil.rmtree(exp.run(fs_id).root)
    before = {p.run_id: p.summary.read_text() for p in exp.all_runs()}
    sub = submit(_spec(exp.root, data), _profile(cpus_per_task=2), "ray", simulate_nodes=2)
    (out,) = wait(sub, timeout_s=540)
    res = _result(sub.jobs[0])
    assert out.ok, (out, res)
    assert res["ray_nodes"] == 2 and res["address"].startswith("127.0.0.1:")
    drv = res["driver"]
    assert (drv["already_finished"], drv["finished_now"], drv["total"]) == (4, 1, 5)
    assert all(exp.run(r).summary.read_text() == s for r, s in before.items())  # not repeated
    assert _metrics_wo_time(exp.run(fs_id).metrics) == _metrics_wo_time(src.run(fs_id).metrics)
    log_text = Path(out.log).with_suffix(".err").read_text()
    assert "srun --overlap --mem=0 -N1 -n1 -w" in log_text and "ray cluster up: 2 node(s)" in log_text
    # the Ray processes of the job are gone
    left = subprocess.run(["pgrep", "-f", f"suite-ray-{sub.job_ids[0]}-"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


@pytest.mark.timeout(600)
def test_preemption_requeues_and_resumes(data, tmp_path):
    """USR2 (what SLURM sends before the time limit or on preemption): submitit checkpoints and requeues the
    task; the rerun resumes after the last finished epoch (epoch 0 is not recomputed) and finishes."""
    from slurm.submit import submit, wait
    from suite.paths import ExperimentPaths

    exp = ExperimentPaths(tmp_path / "preempt")
    cfg = _config(data, "fs", seg_epochs=3)
    sub = submit(_spec(exp.root, data), _profile(), "array", configs=[cfg])
    (job,) = sub.jobs
    rp = exp.run(cfg.run_id)
    _wait_for(lambda: rp.checkpoint_last.exists(), 400, "the first epoch's checkpoint")
    epoch0 = [ln for ln in rp.metrics.read_text().splitlines() if ln.startswith("0,")]
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    _wait_for(
        lambda: (
            _job_state(job.job_id) in ("PENDING", "REQUEUED")
            or "Requeued" in (job.paths.stderr.read_text() if job.paths.stderr.exists() else "")
        ),
        60,
        "the job to requeue itself",
    )
    (out,) = wait(sub, timeout_s=500)
    res = _result(job)
    assert out.ok, out
    assert int(res["slurm_restart_count"]) >= 1  # it ran again after the requeue
    assert rp.status() == "finished"
    rows = rp.metrics.read_text().splitlines()[1:]
    keys = [tuple(r.split(",")[:4]) for r in rows]
    assert len(keys) == len(set(keys)), "an epoch appears twice in metrics.csv"
    assert {k[0] for k in keys} == {"0", "1", "2"}
    assert [ln for ln in rows if ln.startswith("0,")] == epoch0  # epoch 0 kept, not recomputed
    assert "resuming after epoch" in rp.log.read_text()


@pytest.mark.ray
@pytest.mark.timeout(1200)
def test_ray_mode_smoke_grid_with_preemption(array_experiment, data, tmp_path):
    """The main mode on one node (local Ray inside the job) over the whole smoke grid, preempted (USR2) once a
    run has finished: requeued, resumed, no finished run repeated, and the same run directories (metrics bit
    for bit) as the array mode."""
    from slurm.submit import submit, wait
    from suite.paths import ExperimentPaths

    exp = ExperimentPaths(tmp_path / "smoke-smoke")
    sub = submit(_spec(exp.root, data), _profile(cpus_per_task=2), "ray")
    (job,) = sub.jobs
    _wait_for(lambda: any(p.is_finished() for p in exp.all_runs()), 900, "a first finished run")
    done_before = {p.run_id: p.summary.read_text() for p in exp.all_runs() if p.is_finished()}
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    (out,) = wait(sub, timeout_s=1000)
    res = _result(job)
    assert out.ok, (out, res)
    assert int(res["slurm_restart_count"]) >= 1
    for rid, summary in done_before.items():
        assert exp.run(rid).summary.read_text() == summary, f"{rid} was run again"
    src = array_experiment["exp"]
    assert {p.run_id for p in exp.all_runs()} == {p.run_id for p in src.all_runs()}
    for p in exp.all_runs():
        assert _metrics_wo_time(p.metrics) == _metrics_wo_time(src.run(p.run_id).metrics), p.run_id
