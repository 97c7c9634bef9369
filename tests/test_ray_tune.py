"""Ray Tune / Ray Train end to end on a 30-patient phantom at 32x32 (2 CPUs; marked ``ray``).

What is checked (the two marked ``slow`` start extra Ray instances / Train worker groups):
- the smoke grid under Tune writes the same run directories (same run ids, same metric values bit for bit)
  as standalone ``execute``; a relaunch repeats nothing;
- a regressor is trained once and shared by every Proposed run of its n (random search over gamma, lambda);
- a trial process killed mid-run (hard ``os._exit`` after epoch 0) is retried and resumes from its checkpoint,
  ending with the same numbers as an uninterrupted run;
- a driver killed with SIGKILL midway: the relaunch (``--resume``) finishes the rest without repeating a
  finished run (summary.json inode and mtime unchanged, no duplicated metric rows);
- one Ray Train worker equals the standalone run bit for bit; two DDP workers (one of them killed after
  epoch 0 and restarted from the Train checkpoint) end with finite metrics close to one worker's.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ray

OVR = ["image_size=32", "threads=1", "seg_epochs=2", "reg_epochs=1", "unl_batch=32"]
CRASH = "-s7-@0;-s8-@0@1"  # FS seed 7: trial process exits after epoch 0; seed 8 (DDP): rank 1 exits


def _rows(path: Path) -> list[tuple[int, str, str, str, str]]:
    with open(path, newline="") as f:
        return [
            (int(r["epoch"]), r["split"], r["volume"], r["metric"], r["value"]) for r in csv.DictReader(f)
        ]


def _numbers(run_dir: Path) -> list[tuple]:
    """metrics.csv rows without the wall-clock ones (exact string values: bit-for-bit comparison)."""
    return [r for r in _rows(run_dir / "metrics.csv") if r[3] != "epoch_time_s"]


def _spec(prepared: Path, out: Path, **kw: Any) -> Any:
    from suite.experiment_spec import ExperimentSpec

    return ExperimentSpec(data=str(prepared), out=str(out), **{"space": "smoke", "preset": "smoke", **kw})


def _assert_no_duplicates(run_dir: Path) -> None:
    keys = Counter(r[:4] for r in _rows(run_dir / "metrics.csv"))
    dup = [k for k, n in keys.items() if n > 1]
    assert not dup, f"{run_dir.name}: duplicated metric rows {dup[:3]}"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from suite.data.phantom.cohort import write_cohort
    from suite.data.prepare import prepare

    root = tmp_path_factory.mktemp("raydata")
    write_cohort(root / "acdc", patients=30, seed=0)
    prepare(root / "acdc", root / "prepared", size=32)
    return root / "prepared"


@pytest.fixture(scope="module")
def standalone(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reference runs without Ray (FS seed 0, Proposed seed 0 and its regressor, FS seed 7)."""
    from search_spaces import get_space
    from suite.data.dataset import PreparedData
    from suite.stages.runner import execute

    root = tmp_path_factory.mktemp("standalone")
    base = {"data": str(prepared), "data_hash": PreparedData.open(prepared).data_hash}
    sp = get_space("smoke")
    for seed, methods in ((0, ["fs", "proposed"]), (7, ["fs"])):
        for cfg in sp.configs("smoke", [seed], labeled=[5], overrides=OVR, base=base, methods=methods):
            assert execute(cfg, root).is_finished()
    return root


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray for the in-process tests (2 CPUs); fault injection armed for seeds 7 and 8."""
    from suite.ray_glue.cluster import short_temp_dir, start_ray, stop_ray
    from suite.ray_glue.faults import CRASH_ENV, CRASH_MARKER_ENV

    markers = tmp_path_factory.mktemp("crash-markers")
    old = {k: os.environ.get(k) for k in (CRASH_ENV, CRASH_MARKER_ENV)}
    os.environ[CRASH_ENV] = CRASH
    os.environ[CRASH_MARKER_ENV] = str(markers)
    info = start_ray(num_cpus=2, temp_dir=short_temp_dir(f"pytest-{os.getpid()}"))
    try:
        yield info, markers
    finally:
        stop_ray()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------------------------------------- driver killed
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_driver_killed_midway_relaunch_repeats_nothing(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    cmd = [
        sys.executable,
        "-m",
        "suite",
        "tune",
        "--data",
        str(prepared),
        "--space",
        "smoke",
        "--labeled",
        "5",
        "--seeds",
        "0",
        "--out",
        str(out),
        "--num-cpus",
        "2",
    ] + [a for o in OVR for a in ("--set", o)]
    env = {**os.environ, "SUITE_NO_PBAR": "1"}
    env.pop("SUITE_TEST_CRASH", None)
    runs = out / "smoke-smoke" / "runs"
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    before: dict[str, tuple[int, int]] = {}
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            done = sorted(runs.glob("*/summary.json")) if runs.is_dir() else []
            if len(done) >= 2:
                break
            time.sleep(0.5)
        assert proc.poll() is None, (
            f"driver ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        )
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started (same process group)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(1.0)
    for s in runs.glob("*/summary.json"):
        st = s.stat()
        before[s.parent.name] = (st.st_ino, st.st_mtime_ns)
    assert 2 <= len(before) < 5, before
    res = subprocess.run(cmd + ["--resume", "--json"], env=env, capture_output=True, text=True, timeout=800)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["total"] == 5 and summary["already_finished"] == len(before)
    assert summary["finished_now"] == 5 - len(before)
    assert sorted(summary["runs"].values()) == ["finished"] * 5
    for rid, stamp in before.items():
        st = (runs / rid / "summary.json").stat()
        assert (st.st_ino, st.st_mtime_ns) == stamp, f"{rid} was repeated"
    for d in runs.iterdir():
        if d.is_dir() and not d.name.startswith("."):
            _assert_no_duplicates(d)
    epochs = {d.name: {r[0] for r in _rows(d / "metrics.csv")} for d in runs.iterdir() if d.is_dir()}
    for rid, eps in epochs.items():
        assert eps == ({0} if rid.startswith("reg-") else {0, 1}), (rid, eps)


# ----------------------------------------------------------------------------------------- grid == standalone
@pytest.mark.timeout(900)
def test_smoke_grid_equals_standalone_runs(
    prepared: Path, standalone: Path, ray_local, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from search_spaces.driver import run_experiment

    out = tmp_path / "res"
    spec = _spec(prepared, out, seeds=[0], labeled=[5], overrides=OVR)
    with caplog.at_level("INFO", logger="search_spaces.progress"):
        s = run_experiment(spec)
    assert s["ok"], s
    assert s["total"] == 5 and s["finished_now"] == 5 and s["rounds"] == [5]
    lines = [r.getMessage() for r in caplog.records if r.name == "search_spaces.progress"]
    assert lines and lines[-1].startswith(
        "smoke-smoke: 5/5 runs finished (0 already done), 0 running, 0 failed"
    )
    exp = out / "smoke-smoke"
    doc = json.loads((exp / "experiment.json").read_text())
    assert doc["space"] == "smoke" and doc["launcher"] == "ray" and doc["seeds"] == [0]
    assert doc["cohort"]["n_patients"] == 30 and len(doc["data_hash"]) > 8
    ids = {p.name for p in (exp / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert ids == set(s["runs"])
    ref = {p.name for p in (standalone / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")}
    common = ids & ref
    assert len(common) == 3  # FS, Proposed and its regressor (seed 0) under both launchers
    for rid in common:
        assert _numbers(exp / "runs" / rid) == _numbers(standalone / "runs" / rid), rid
        a = json.loads((exp / "runs" / rid / "summary.json").read_text())
        b = json.loads((standalone / "runs" / rid / "summary.json").read_text())
        assert (a["best_epoch"], a["best_value"]) == (b["best_epoch"], b["best_value"])
        assert json.loads((exp / "runs" / rid / "config.json").read_text())["run_id"] == rid
    # a second launch finds everything finished and does not even start Ray
    stamps = {rid: (exp / "runs" / rid / "summary.json").stat().st_mtime_ns for rid in ids}
    s2 = run_experiment(spec)
    assert s2["already_finished"] == 5 and s2["finished_now"] == 0 and s2["ok"]
    assert stamps == {rid: (exp / "runs" / rid / "summary.json").stat().st_mtime_ns for rid in ids}


@pytest.mark.timeout(900)
def test_regressor_trained_once_for_all_proposed_runs(prepared: Path, ray_local, tmp_path: Path) -> None:
    from search_spaces.driver import run_experiment

    out = tmp_path / "res"
    s = run_experiment(
        _spec(
            prepared,
            out,
            space="sensitivity",
            seeds=[0],
            labeled=[5],
            methods=["proposed"],
            search="random",
            num_samples=2,
            search_seed=3,
            overrides=OVR,
        )
    )
    assert s["ok"], s
    runs = out / "sensitivity-smoke" / "runs"
    regs = sorted(p for p in runs.iterdir() if p.name.startswith("reg-"))
    props = sorted(p for p in runs.iterdir() if p.name.startswith("seg-proposed-"))
    # 2 (gamma, lambda) draws x update {alternating, joint}
    assert len(regs) == 1 and len(props) == 4 and s["total"] == 5 and s["rounds"] == [5]
    reg = regs[0]
    _assert_no_duplicates(reg)
    assert (reg / "run.log").read_text().count("finishing") == 1  # one training, not one per Proposed run
    reg_done = (reg / "summary.json").stat().st_mtime
    gammas = set()
    for p in props:
        cfg = json.loads((p / "config.json").read_text())
        gammas.add((cfg["gamma"], cfg["lam"]))
        assert (p / "config.json").stat().st_mtime >= reg_done  # started only after the regressor finished
    assert len(gammas) == 2


# ---------------------------------------------------------------------------------------------- faults
@pytest.mark.timeout(900)
def test_killed_trial_process_resumes_from_checkpoint(
    prepared: Path, standalone: Path, ray_local, tmp_path: Path
) -> None:
    from search_spaces.driver import run_experiment

    _, markers = ray_local
    out = tmp_path / "res"
    s = run_experiment(
        _spec(prepared, out, seeds=[7], labeled=[5], methods=["fs"], overrides=OVR, max_failures=2)
    )
    assert s["ok"], s
    (rid,) = s["runs"]
    run = out / "smoke-smoke" / "runs" / rid
    assert (markers / f"{rid}.crashed").exists()  # the trial process did exit after epoch 0
    assert "resuming after epoch 0" in (run / "run.log").read_text()
    _assert_no_duplicates(run)
    assert _numbers(run) == _numbers(standalone / "runs" / rid)  # resumed == uninterrupted


@pytest.mark.timeout(900)
def test_one_train_worker_equals_standalone(
    prepared: Path, standalone: Path, ray_local, tmp_path: Path
) -> None:
    from search_spaces.driver import run_experiment

    out = tmp_path / "res"
    s = run_experiment(
        _spec(prepared, out, seeds=[0], labeled=[5], methods=["fs"], overrides=OVR, use_train=True)
    )
    assert s["ok"], s
    (rid,) = s["runs"]
    run = out / "smoke-smoke" / "runs" / rid
    assert _numbers(run) == _numbers(standalone / "runs" / rid)
    assert (out / "smoke-smoke" / "ray" / "train" / rid).is_dir()  # it did go through Ray Train
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 1 and env.get("torch_threads") == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_ddp_workers_close_to_one_and_survive_a_killed_worker(
    prepared: Path, ray_local, tmp_path: Path
) -> None:
    from search_spaces.driver import run_experiment
    from suite.config import RunConfig
    from suite.stages.runner import execute

    _, markers = ray_local
    ovr = OVR + ["seg_batch=2"]
    out = tmp_path / "res"
    s = run_experiment(
        _spec(
            prepared,
            out,
            seeds=[8],
            labeled=[5],
            methods=["fs"],
            overrides=ovr,
            workers_per_trial=2,
            cpus_per_trial=1,
            max_failures=2,
        )
    )
    assert s["ok"], s
    (rid,) = s["runs"]
    run = out / "smoke-smoke" / "runs" / rid
    assert (markers / f"{rid}.crashed").exists()  # rank 1 was killed after epoch 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    _assert_no_duplicates(run)
    one = RunConfig.from_config_json(
        {**json.loads((run / "config.json").read_text()), "world_size": 1}, source="config.json"
    )
    ref = execute(one, tmp_path / "one")
    two_rows = {r[:4]: float(r[4]) for r in _rows(run / "metrics.csv")}
    one_rows = {r[:4]: float(r[4]) for r in _rows(ref.metrics)}
    assert set(two_rows) == set(one_rows)  # same epochs, splits, volumes and metrics
    assert all(math.isfinite(v) for v in two_rows.values())
    for ep in (0, 1):
        a, b = two_rows[(ep, "train", "", "loss_ce")], one_rows[(ep, "train", "", "loss_ce")]
        assert abs(a - b) <= 0.25 * max(abs(b), 1e-6), (ep, a, b)
        a, b = two_rows[(ep, "val", "", "dice_mean")], one_rows[(ep, "val", "", "dice_mean")]
        assert abs(a - b) <= 0.25, (ep, a, b)


def test_resume_never_unpickles_anything_from_the_results_folder(
    prepared: Path, ray_local, tmp_path: Path
) -> None:
    """A results folder can come from someone else. A pickle planted where Tune keeps its experiment state
    (``ray/tune/<launch>/``, beside an unfinished run's trial folder, exactly what Tune's restore would load)
    is never loaded by ``--resume``: the run directories alone say what is left to do."""
    import pickle

    from search_spaces.driver import run_experiment

    out = tmp_path / "res"
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # what a malicious pickle does: run a command when loaded
            return (os.system, (f"touch {marker}",))

    spec = _spec(prepared, out, seeds=[0], labeled=[5], methods=["fs"], overrides=OVR, resume=True)
    planted = out / "smoke-smoke" / "ray" / "tune" / "launch1"
    (planted / "seg-fs-n5-s0-unfinished").mkdir(parents=True)
    for name in ("tuner.pkl", "trainable.pkl", "search_gen_state.pkl", "experiment_state.pkl"):
        (planted / name).write_bytes(pickle.dumps(Payload()))
    (planted / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    s = run_experiment(spec)
    assert s["ok"] and s["finished_now"] == 1, s
    assert not marker.exists(), "resume loaded a pickle from the results folder"
    assert (planted / "tuner.pkl").exists()  # left as it was, not read, not deleted


def test_local_ray_listens_only_on_loopback(ray_local) -> None:
    """Every socket the local Ray's processes (children of this process) listen on is bound to 127.0.0.1."""
    psutil = pytest.importorskip("psutil")
    ours = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    listening = []
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in ours:
            listening.append((c.pid, c.laddr.ip, c.laddr.port))
    assert listening, "no listening socket found for the Ray processes"
    public = [x for x in listening if x[1] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert not public, f"Ray listens beyond loopback: {public}"


def test_local_ray_requires_its_token_and_keeps_its_files_private(ray_local) -> None:
    """The dashboard's job API (which runs code as the user) refuses a request without the token and accepts
    one with it; the token file is 0600 inside a 0700 folder that also holds Ray's sockets and logs."""
    import stat
    import urllib.error
    import urllib.request

    from suite.ray_glue.cluster import read_auth_token

    info, _ = ray_local
    url = f"http://{info.dashboard_url}/api/jobs/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    assert refused.value.code in (401, 403)
    token = read_auth_token()
    assert token and len(token) >= 32
    ok = urllib.request.urlopen(
        urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}), timeout=30
    )
    assert ok.status == 200
    token_path = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert (
        token_path.parent == Path(info.temp_dir) and stat.S_IMODE(Path(info.temp_dir).stat().st_mode) == 0o700
    )


def test_stopped_local_ray_leaves_no_temp_dir(tmp_path: Path) -> None:
    """A local Ray's temp dir (sockets, logs, token) is removed when it stops, and the token path is not
    inherited by what the process starts later (a fresh process: this one already holds a Ray)."""
    script = (
        "import os, pathlib\n"
        "from suite.ray_glue.cluster import short_temp_dir, start_ray, stop_ray\n"
        "info = start_ray(num_cpus=1, temp_dir=short_temp_dir(f'pytest-stop-{os.getpid()}'))\n"
        "assert pathlib.Path(info.temp_dir).is_dir()\n"
        "stop_ray()\n"
        "print(pathlib.Path(info.temp_dir).exists(), 'RAY_AUTH_TOKEN_PATH' in os.environ)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["False", "False"], out.stdout


def test_local_ray_survives_the_preemption_signal(ray_local) -> None:
    """SLURM sends the preemption signal (USR2) to every process of the job step. The local Ray's processes
    (GCS, raylet, dashboard, workers, including one started later) must not act on it: killed, they take the
    driver with them (exit 1, no exception) before submitit's handler can requeue the job. This process still
    gets the signal (it was only blocked while Ray started)."""
    psutil = pytest.importorskip("psutil")
    import ray

    from suite.ray_glue.signals import PREEMPTION_SIGNAL

    @ray.remote(num_cpus=0)
    def pid() -> int:
        return os.getpid()

    worker = psutil.Process(ray.get(pid.remote(), timeout=60))

    def ray_daemon(p: psutil.Process) -> str | None:
        # Ray's children come and go (a placement-group worker may exit, or be a zombie not yet reaped, while
        # we list them): such a process is simply not a daemon of interest, never an error
        try:
            name, cmd = p.name(), " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None
        return name if name in ("gcs_server", "raylet") else ("dashboard" if "dashboard" in cmd else None)

    def alive(p: psutil.Process) -> bool:
        # a process can exit between is_running() and status(): that is "not alive", never an error
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    named = [(p, ray_daemon(p)) for p in psutil.Process().children(recursive=True)]
    daemons = [p for p, name in named if name]
    assert {name for _, name in named} >= {"gcs_server", "raylet"}, named
    got: list[int] = []
    previous = signal.signal(PREEMPTION_SIGNAL, lambda signum, frame: got.append(signum))
    try:
        for p in [*daemons, worker]:
            p.send_signal(PREEMPTION_SIGNAL)
        os.kill(os.getpid(), PREEMPTION_SIGNAL)
        time.sleep(2)
        assert got == [PREEMPTION_SIGNAL]
        gone = [p.pid for p in [*daemons, worker] if not alive(p)]
        assert not gone, f"killed by the preemption signal: {gone}"
        assert ray.get(pid.remote(), timeout=60) > 0
    finally:
        signal.signal(PREEMPTION_SIGNAL, previous)
