"""The Ray glue: the only core module that imports Ray (imported lazily, inside functions).

* :func:`start_ray` — a quiet local Ray (``address="local"``, own temp dir, dashboard and every server on
  127.0.0.1, token auth off, usage stats off, a ``trial_driver`` custom resource) or a connection to an
  existing cluster (``address=...``, the SLURM launcher).
* :func:`tune_trial` — the Tune *function* trainable. A trial runs one run directory:

  - ``world_size == 1`` (default): :func:`suite.stages.execute` runs directly in the trial process and each
    epoch is reported to Tune from the ``on_epoch_end`` hook (no ``TorchTrainer`` start-up: ~1 s per trial
    instead of 8–20 s);
  - ``world_size > 1`` (``--workers-per-trial``) or ``use_train``: the trial builds and fits a Ray Train V2
    ``TorchTrainer`` whose worker loop (:func:`train_loop_per_worker`) calls the same ``execute`` unchanged
    on every rank; rank 0 reports each epoch with a checkpoint (the run's own ``checkpoint_last.pt``,
    ``checkpoint_best.pt`` and ``metrics.csv``), ``TuneReportCallback`` forwards the metrics to Tune, and a
    restarted worker group resumes from ``ray.train.get_checkpoint()`` *and* the run directory, whichever is
    newer (so a run can move between launchers).

* :func:`run_trials` — one Tune experiment over a list of run configs (one phase of the driver in
  ``search_spaces.driver``), with per-trial resources, fault tolerance (``tune.FailureConfig``) and the
  suite's own one-line progress (Tune itself is silenced with ``verbose=0``).

Resources on a small machine (see ``shared/notes/ray-2.60.md``): a direct trial asks for
``{"CPU": cpus_per_trial, "GPU": gpus_per_trial}`` (fractions allowed, several small trials per GPU); a
Train trial asks only for ``{"trial_driver": 1}`` and its workers for the CPUs/GPUs, so that the trial driver
never takes a CPU away from its own workers (which deadlocks on 2 CPUs).

A trial never waits while holding its resources: before running it probes the run's lock (and the locks of
its unfinished prerequisites) without blocking; when another launcher holds one, the trial returns at once
with ``busy=1`` and the driver waits outside Ray and requeues it.

Test-only fault injection: ``SUITE_TEST_CRASH="<substring>@<epoch>[@<rank>];..."`` makes the process of a
run whose id contains ``<substring>`` exit hard (``os._exit``) right after epoch ``<epoch>``'s checkpoint, on
rank ``<rank>`` (default 0), once per run (marker files in ``SUITE_TEST_CRASH_MARKER_DIR``, default
``<experiment>/runs/.crash-markers``). Read in the trial/worker process: set it before Ray starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from suite.config import RunConfig
from suite.errors import InputError
from suite.paths import ExperimentPaths, RunPaths

log = logging.getLogger("suite.distributed")

TRIAL_DRIVER = "trial_driver"  # custom resource held by a Train trial's driver (not a CPU)
TRIAL_DRIVER_UNITS = 1000
RAY_CHECKPOINT_FILES = ("checkpoint_last.pt", "checkpoint_best.pt", "metrics.csv")

# Set before Ray starts (inherited by the raylet and every worker).
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",  # 2.60 turns token auth on and writes ~/.ray/auth_token
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",  # TorchTrainer start-up 16-21 s -> 8-11 s here
    "RAY_DEDUP_LOGS": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # the legacy reporter is silent at verbose=0 (the new one prints tables)
    # OpenMP threads that spin while waiting make trials sharing cores 10-50x slower (BENCHMARKS.md, issue 3);
    # the wait policy does not change any number
    "OMP_WAIT_POLICY": "PASSIVE",
}
# Local mode only: resolve the node IP to 127.0.0.1 so that GCS, raylet, workers, dashboard and agents all
# listen on loopback (Ray binds its gRPC servers to the node IP when that is 127.0.0.1).
RAY_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

CRASH_ENV = "SUITE_TEST_CRASH"
CRASH_MARKER_ENV = "SUITE_TEST_CRASH_MARKER_DIR"


# ---------------------------------------------------------------------------------------------- ray.init
@dataclass
class RayInfo:
    """What :func:`start_ray` started or joined."""

    address: str
    local: bool
    cpus: float
    gpus: float
    has_trial_driver: bool
    temp_dir: str | None
    dashboard_url: str | None
    start_s: float


def short_temp_dir(key: str) -> str:
    """A short per-experiment temp dir (Ray's unix sockets must fit in 107 characters)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"/tmp/sray-{os.getuid()}-{digest}"


def start_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    temp_dir: str | None = None,
    object_store_mb: int = 512,
) -> RayInfo:
    """Start a local Ray (default) or join ``address`` (``"auto"`` or ``host:port``); idempotent per process.

    Local mode listens only on 127.0.0.1 and reserves ``trial_driver`` units for Train trial drivers.
    A joined cluster should be started with ``ray start ... --resources='{"trial_driver": 1000}'``
    (:func:`ray_start_resources_arg`); without it Train trials fall back to a 0.01-CPU driver.
    """
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    local = address in (None, "", "local")
    saved_env = {k: os.environ.get(k) for k in RAY_LOCAL_ENV}
    if local:
        for k, v in RAY_LOCAL_ENV.items():
            os.environ[k] = v
    try:
        return _start_ray(address, local, num_cpus, num_gpus, temp_dir, object_store_mb)
    finally:
        # the Ray processes started above have read it; a process this one starts later (sbatch, srun) must
        # not inherit it: `ray start --address` on a worker node refuses to join with it set to 0
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _start_ray(
    address: str | None,
    local: bool,
    num_cpus: int | None,
    num_gpus: int | None,
    temp_dir: str | None,
    object_store_mb: int,
) -> RayInfo:
    import ray

    if local:  # ray may have been imported before the variable was set
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    t0 = time.perf_counter()
    tmp: str | None = None
    dashboard: str | None = None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "configure_logging": True,
        }
        if local:
            tmp = temp_dir or short_temp_dir(str(os.getpid()))
            if len(tmp) > 60:
                raise InputError(
                    f"ray temp dir {tmp!r} is {len(tmp)} characters; Ray's socket paths need a "
                    "short one (<= 60): pass a shorter path"
                )
            Path(tmp).mkdir(parents=True, exist_ok=True)
            kwargs.update(
                address="local",
                _temp_dir=tmp,
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                _node_ip_address="127.0.0.1",
                resources={TRIAL_DRIVER: TRIAL_DRIVER_UNITS},
                object_store_memory=object_store_mb * 1024 * 1024,
            )
            if num_cpus is not None:
                kwargs["num_cpus"] = int(num_cpus)
            if num_gpus is not None:
                kwargs["num_gpus"] = int(num_gpus)
        else:
            if num_cpus is not None or num_gpus is not None:
                log.warning("--address given: the cluster's own CPU/GPU counts are used")
            kwargs.update(address=address, runtime_env={"env_vars": {k: os.environ[k] for k in RAY_ENV}})
        attempts = 3 if local else 1
        for attempt in range(1, attempts + 1):
            try:
                with preemption_signal_blocked() if local else contextlib.nullcontext():
                    ctx = ray.init(**kwargs)
                break
            except ConnectionError as e:
                raise InputError(
                    f"--address {address}: cannot connect to a Ray cluster ({e}); start one "
                    "with `ray start --head` or drop --address to start a local Ray"
                ) from e
            except Exception as e:  # noqa: BLE001 - Ray's fixed 30 s raylet wait fails on an overloaded host
                if "timed out during startup" not in str(e) or attempt == attempts:
                    raise
                log.warning(
                    "ray start timed out (overloaded machine?); retrying (%d/%d)", attempt + 1, attempts
                )
                with contextlib.suppress(Exception):
                    ray.shutdown()
                _kill_children_using(str(kwargs["_temp_dir"]))
                kwargs["_temp_dir"] = tmp = f"{temp_dir or short_temp_dir(str(os.getpid()))}-{attempt + 1}"
                Path(tmp).mkdir(parents=True, exist_ok=True)
        dashboard = getattr(ctx, "dashboard_url", None) or None
    res = ray.cluster_resources()
    info = RayInfo(
        address=str(address or "local"),
        local=local,
        cpus=float(res.get("CPU", 0)),
        gpus=float(res.get("GPU", 0)),
        has_trial_driver=res.get(TRIAL_DRIVER, 0) >= 1,
        temp_dir=tmp,
        dashboard_url=dashboard,
        start_s=time.perf_counter() - t0,
    )
    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    log.info(
        "ray %s: %g CPUs, %g GPUs (start %.1fs)",
        "started locally" if local else f"joined at {address}",
        info.cpus,
        info.gpus,
        info.start_s,
    )
    return info


# the signal SLURM sends before a time limit or on preemption (submitit's `--signal=USR2@90`; a manual
# `scancel --signal=USR2`). SLURM delivers it to every process of the job step, not only to submitit's.
PREEMPTION_SIGNAL = signal.SIGUSR2


@contextlib.contextmanager
def preemption_signal_blocked():
    """Processes started inside this block never act on SLURM's preemption signal: it is blocked in this
    thread while they start, and a blocked signal stays blocked across fork and exec (Ray's GCS, raylet,
    dashboard, and the workers the raylet starts later all inherit it). This process gets it again, with any
    that arrived meanwhile still pending, when the block ends.

    Without it the signal kills them (its default action) within milliseconds, the Ray core worker in the
    driver then ends the driver's process (exit 1, no Python exception), and whether submitit's handler in
    that process has requeued the job by then is a race: lost, the job ends FAILED without a result instead of
    being requeued. Only the submitit process should act on the signal (checkpoint, requeue); Ray ends with
    the job. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {PREEMPTION_SIGNAL})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _kill_children_using(path: str) -> None:
    """End this process's own children whose command line names ``path`` (the Ray processes a failed
    ``ray.init`` left behind: GCS, dashboard, monitors), by pid."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with ray
        return
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(path in arg for arg in child.cmdline()):
                child.kill()


def ray_running() -> bool:
    """True when this process is connected to Ray (without importing Ray when it is not loaded)."""
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def stop_ray() -> None:
    """Shut down (local) or disconnect from (joined) Ray."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def ray_start_resources_arg() -> str:
    """The ``ray start`` argument that declares the trial-driver resource (for cluster launchers)."""
    return "--resources=" + json.dumps({TRIAL_DRIVER: TRIAL_DRIVER_UNITS})


# ---------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class TrialOptions:
    """How each trial runs (the same for every trial of one launch)."""

    experiment_root: str
    cpus: float = 1.0  # per direct trial, or per Train worker
    gpus: float = 0.0  # per direct trial (fractions share a GPU), or per Train worker
    use_train: bool | None = None  # None: Train only when world_size > 1
    train_max_failures: int = 1  # Train: worker-group restarts from the last checkpoint
    has_trial_driver: bool = True

    def wants_train(self, cfg: RunConfig) -> bool:
        return bool(self.use_train) if self.use_train is not None else cfg.world_size > 1


def trial_resources(cfg: RunConfig, opts: TrialOptions) -> dict[str, float]:
    """The Tune resource request of one trial (see the module docstring)."""
    if opts.wants_train(cfg):
        return {TRIAL_DRIVER: 1.0} if opts.has_trial_driver else {"CPU": 0.01}
    res = {"CPU": float(opts.cpus)}
    if opts.gpus > 0:
        res["GPU"] = float(opts.gpus)
    return res


def worker_resources(opts: TrialOptions) -> dict[str, float]:
    res = {"CPU": float(opts.cpus)}
    if opts.gpus > 0:
        res["GPU"] = float(opts.gpus)
    return res


def default_concurrency(cfgs: Sequence[RunConfig], opts: TrialOptions, cpus: float, gpus: float) -> int:
    """How many trials fit at once: the cluster's CPUs (and GPUs) over what one trial's processes take."""
    if not cfgs:
        return 1
    cfg = cfgs[0]
    per = worker_resources(opts)
    k = cfg.world_size if opts.wants_train(cfg) else 1
    fits = math.floor(cpus / (per["CPU"] * k) + 1e-9) if per["CPU"] > 0 else len(cfgs)
    if per.get("GPU", 0) > 0:
        fits = min(fits, math.floor(gpus / (per["GPU"] * k) + 1e-9))
    return max(1, min(fits, len(cfgs)))


def _cfg_for_trial(cfg: RunConfig, opts: TrialOptions) -> RunConfig:
    # CPU-only trials must not grab a GPU that Ray did not assign (device is not identity)
    if opts.gpus <= 0 and cfg.device == "auto":
        return cfg.replace(device="cpu")
    return cfg


# ---------------------------------------------------------------------------------------------- locks
def busy_lock(cfg: RunConfig, experiment_root: str | os.PathLike) -> Path | None:
    """The lock file of an unfinished run (this one or a prerequisite) that another process holds, else None.

    Probes without blocking (acquire with timeout 0, release at once).
    """
    from filelock import FileLock, Timeout

    exp = ExperimentPaths(Path(experiment_root))
    for c in [*_all_prerequisites(cfg), cfg]:
        paths = exp.run(c.run_id)
        if paths.is_finished() or not paths.lock.exists():
            continue
        lock = FileLock(str(paths.lock))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return paths.lock
        else:
            lock.release()
    return None


def _all_prerequisites(cfg: RunConfig) -> list[RunConfig]:
    out: list[RunConfig] = []
    for pre in cfg.prerequisites():
        out.extend(_all_prerequisites(pre))
        out.append(pre)
    return out


def wait_for_lock(lock_path: Path, poll_s: float = 2.0, timeout_s: float | None = None) -> bool:
    """Block (outside Ray, holding nothing) until ``lock_path`` is free; False on timeout."""
    from filelock import FileLock, Timeout

    t0 = time.monotonic()
    lock = FileLock(str(lock_path))
    while True:
        try:
            lock.acquire(timeout=poll_s)
        except Timeout:
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                return False
            continue
        lock.release()
        return True


def _mark_launcher(kind: str) -> None:
    """``SUITE_LAUNCHER`` for env.json: ``ray-tune`` / ``ray-train`` (appended to e.g. ``slurm``)."""
    cur = os.environ.get("SUITE_LAUNCHER", "")
    if "ray-" in cur:
        return
    os.environ["SUITE_LAUNCHER"] = kind if cur in ("", "local") else f"{cur}+{kind}"


# ---------------------------------------------------------------------------------------------- hooks
def _maybe_crash(epoch: int, paths: RunPaths, rank: int) -> None:
    """Test-only fault injection (see the module docstring)."""
    spec = os.environ.get(CRASH_ENV, "").strip()
    if not spec:
        return
    hit = False
    for entry in spec.split(";"):
        parts = entry.strip().split("@")
        if len(parts) < 2:
            continue
        match, at, want_rank = parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
        if match in paths.run_id and at == epoch and want_rank == rank:
            hit = True
    if not hit:
        return
    marker_dir = Path(os.environ.get(CRASH_MARKER_ENV) or (paths.root.parent / ".crash-markers"))
    marker_dir.mkdir(parents=True, exist_ok=True)
    marker = marker_dir / f"{paths.run_id}.crashed"
    if marker.exists():
        return
    marker.write_text(f"epoch {epoch} pid {os.getpid()}\n")
    log.warning("%s: test fault injection: exiting the process after epoch %d", paths.run_id, epoch)
    os._exit(17)


def _report_metrics(metrics: dict[str, float], cfg: RunConfig) -> dict[str, Any]:
    out: dict[str, Any] = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    out["epoch"] = int(metrics.get("epoch", -1))
    out["run_id"] = cfg.run_id
    return out


class TuneHooks:
    """Direct trials: report each epoch's run-level metrics to Tune."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.reported = 0

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], paths: RunPaths) -> None:
        from ray import tune

        _maybe_crash(epoch, paths, 0)
        tune.report(_report_metrics(metrics, self.cfg))
        self.reported += 1


class TrainHooks:
    """Train workers: every rank reports (a barrier); rank 0 attaches the run's checkpoint files."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], paths: RunPaths) -> None:
        import ray.train

        rank = ray.train.get_context().get_world_rank()
        _maybe_crash(epoch, paths, rank)
        report = _report_metrics(metrics, self.cfg)
        if rank != 0:
            ray.train.report(report)
            return
        tmp = Path(tempfile.mkdtemp(prefix=f"suite-ckpt-{paths.run_id[:40]}-"))
        try:
            for name in RAY_CHECKPOINT_FILES:
                src = paths.root / name
                if src.exists():
                    shutil.copy2(src, tmp / name)
            (tmp / "meta.json").write_text(json.dumps({"run_id": paths.run_id, "epoch": epoch}) + "\n")
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(str(tmp)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- checkpoints
def checkpoint_epoch(path: Path) -> int:
    """The epoch stored in a suite checkpoint (-1 when absent or unreadable)."""
    if not path.exists():
        return -1
    import torch

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        return int(ck.get("epoch", -1))
    except Exception:  # noqa: BLE001 - a corrupt file counts as absent
        return -1


def restore_from_checkpoint_dir(ckpt_dir: Path, paths: RunPaths) -> bool:
    """Copy a Ray checkpoint's files into the run directory when it is newer than the run's own checkpoint.

    Returns True when files were copied (the run then resumes from the Ray checkpoint's epoch; ``execute``
    cuts ``metrics.csv`` back to it).
    """
    meta_path = ckpt_dir / "meta.json"
    if not meta_path.exists():
        return False
    meta = json.loads(meta_path.read_text())
    if meta.get("run_id") != paths.run_id:
        log.warning(
            "%s: Ray checkpoint %s belongs to %s; ignored", paths.run_id, ckpt_dir, meta.get("run_id")
        )
        return False
    ray_epoch = int(meta.get("epoch", -1))
    own_epoch = checkpoint_epoch(paths.checkpoint_last)
    if ray_epoch <= own_epoch:
        return False
    from suite.atomic import atomic_path

    paths.root.mkdir(parents=True, exist_ok=True)
    for name in RAY_CHECKPOINT_FILES:
        src = ckpt_dir / name
        if src.exists():
            with atomic_path(paths.root / name) as tmp:
                shutil.copyfile(src, tmp)
    log.info(
        "%s: restored the Ray checkpoint of epoch %d (run directory had %d)",
        paths.run_id,
        ray_epoch,
        own_epoch,
    )
    return True


# ---------------------------------------------------------------------------------------------- Train
def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker loop: the standalone ``execute`` on every rank (process group set up by Train)."""
    import ray.train
    import torch

    from suite.stages import execute

    cfg = RunConfig.from_dict(config["run"], source="trial config")
    torch.set_num_threads(int(cfg.threads))
    _mark_launcher("ray-train")
    root = Path(config["root"])
    paths = ExperimentPaths(root).run(cfg.run_id)
    rank = ray.train.get_context().get_world_rank()
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None and rank == 0:
        with ckpt.as_directory() as d:
            restore_from_checkpoint_dir(Path(d), paths)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    execute(cfg, root, hooks=TrainHooks(cfg))


def fit_with_train(cfg: RunConfig, opts: TrialOptions, *, in_tune: bool = True) -> Any:
    """Build and fit a ``TorchTrainer`` (``num_workers = cfg.world_size``) for one run; returns its Result.

    The Train run name is the run id and its storage ``<experiment>/ray/train``: a retried trial finds its
    Train checkpoints again.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    callbacks = []
    if in_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    storage = ExperimentPaths(Path(opts.experiment_root)).ray_dir / "train"
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"run": cfg.to_dict(include_derived=False), "root": opts.experiment_root},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.world_size, use_gpu=opts.gpus > 0, resources_per_worker=worker_resources(opts)
        ),
        run_config=ray.train.RunConfig(
            name=cfg.run_id,
            storage_path=str(storage.resolve()),
            callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=opts.train_max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=ray.train.v2.api.config.LoggingConfig(log_level="WARNING"),
        ),
    )
    return trainer.fit()


# ---------------------------------------------------------------------------------------------- Tune
def tune_trial(config: dict[str, Any]) -> None:
    """The Tune function trainable: one run directory (see the module docstring)."""
    from ray import tune

    opts = TrialOptions(**config["opts"])
    cfg = _cfg_for_trial(RunConfig.from_dict(config["trial"]["run"], source="trial config"), opts)
    paths = ExperimentPaths(Path(opts.experiment_root)).run(cfg.run_id)
    base = {"run_id": cfg.run_id}
    if paths.is_finished():
        tune.report({**base, "done": 1, "skipped": 1, "busy": 0})
        return
    held = busy_lock(cfg, opts.experiment_root)
    if held is not None:  # another launcher trains it: give the resources back, the driver waits outside
        tune.report({**base, "done": 0, "skipped": 0, "busy": 1, "lock": str(held)})
        return
    import torch

    torch.set_num_threads(int(cfg.threads))
    if opts.wants_train(cfg):
        result = fit_with_train(cfg, opts, in_tune=True)
        if getattr(result, "error", None) is not None:
            raise RuntimeError(f"{cfg.run_id}: Ray Train failed: {result.error}")
    else:
        from suite.stages import execute

        _mark_launcher("ray-tune")
        execute(cfg, opts.experiment_root, hooks=TuneHooks(cfg))
    done = paths.is_finished()
    final: dict[str, Any] = {**base, "done": int(done), "skipped": 0, "busy": 0}
    if done:
        summary = json.loads(paths.summary.read_text())
        final["best_value"] = float(summary.get("best_value", float("nan")))
        final["best_epoch"] = int(summary.get("best_epoch", -1))
    tune.report(final)


def _trial_name(trial: Any) -> str:
    return str(trial.config["trial"]["run_id"])


def _trial_resources(config: dict[str, Any]) -> Any:
    from ray import tune

    opts = TrialOptions(**config["opts"])
    cfg = RunConfig.from_dict(config["trial"]["run"], source="trial config")
    return tune.PlacementGroupFactory([trial_resources(cfg, opts)])


@dataclass
class TrialOutcome:
    """What the driver learns about one run from its trial."""

    run_id: str
    status: str  # finished | busy | error | incomplete
    error: str | None = None
    trial_path: str | None = None
    lock: str | None = None
    best_value: float | None = None


@dataclass
class Progress:
    """Counts for the suite's single progress line (shared by the driver and the Tune callback).

    Runs are counted by run id, never by event: a restored Tune experiment re-reports trials of runs that
    finished before (skipped in a second), and one run can end in several rounds; neither counts twice."""

    label: str
    total: int
    already: frozenset[str] = frozenset()  # finished before this launch
    running: int = 0
    phase: str = ""
    finished_ids: set[str] = field(default_factory=set)
    failed_ids: set[str] = field(default_factory=set)
    t0: float = field(default_factory=time.monotonic)
    last_line: str = ""
    last_emit: float = 0.0
    min_interval_s: float = 5.0

    def mark(self, run_id: str, *, finished: bool = False, failed: bool = False) -> None:
        if finished:
            self.finished_ids.add(run_id)
            self.failed_ids.discard(run_id)
        elif failed and run_id not in self.finished_ids:
            self.failed_ids.add(run_id)

    @property
    def finished(self) -> int:
        """Runs finished this launch."""
        return len(self.finished_ids - self.already)

    def line(self) -> str:
        el = int(time.monotonic() - self.t0)
        done = len(self.finished_ids | self.already)
        return (
            f"{self.label}: {done}/{self.total} runs finished "
            f"({len(self.already)} already done), {self.running} running, {len(self.failed_ids)} failed"
            f"{', ' + self.phase if self.phase else ''} [{el // 60}:{el % 60:02d}]"
        )

    def emit(self, force: bool = False) -> None:
        from suite.log import progress_enabled

        text = self.line()
        now = time.monotonic()
        core, last_core = text.rsplit(" [", 1)[0], self.last_line.rsplit(" [", 1)[0]
        if core == last_core and not force:
            return  # nothing new to say
        self.last_line, self.last_emit = text, now
        if progress_enabled():
            import sys

            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
        else:
            logging.getLogger("search_spaces.progress").info("%s", text)

    def close(self) -> None:
        from suite.log import progress_enabled

        if progress_enabled():
            import sys

            sys.stderr.write("\n")


_ACTIVE_PROGRESS: Progress | None = None  # the driver's current progress line (set by run_trials)


def _progress_callback_class() -> type:
    """The Tune callback class, built on first use (importing ray.tune is slow) and importable as
    ``suite.distributed.ProgressCallback`` (module ``__getattr__``), so that a Tune experiment restored in a
    new driver process unpickles it by reference and reports to *that* driver's progress line."""
    cls = globals().get("_PROGRESS_CALLBACK_CLASS")
    if cls is not None:
        return cls
    from ray.tune import Callback

    class ProgressCallback(Callback):
        def __init__(self) -> None:
            self.running: set[str] = set()
            self.last: dict[str, dict] = {}

        def __getstate__(self) -> dict:
            return {}

        def __setstate__(self, state: dict) -> None:
            self.__init__()

        def _update(self, trial: Any, finished: bool = False, failed: bool = False) -> None:
            prog = _ACTIVE_PROGRESS
            if prog is None:
                return
            prog.running = len(self.running)
            prog.mark(_trial_run_id(trial.config) or trial.trial_id, finished=finished, failed=failed)
            prog.emit()

        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
            self.running.add(trial.trial_id)
            self._update(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
            self.last[trial.trial_id] = result

        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            self.running.discard(trial.trial_id)
            res = self.last.get(trial.trial_id, {})
            self._update(trial, finished=bool(res.get("done")) and not res.get("busy"))

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            self.running.discard(trial.trial_id)
            self._update(trial, failed=True)

    ProgressCallback.__module__ = __name__
    ProgressCallback.__qualname__ = "ProgressCallback"
    globals()["_PROGRESS_CALLBACK_CLASS"] = cls = ProgressCallback
    return cls


def __getattr__(name: str) -> Any:  # PEP 562: lazy, picklable-by-reference Tune callback class
    if name == "ProgressCallback":
        return _progress_callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_trials(
    cfgs: Sequence[RunConfig],
    opts: TrialOptions,
    *,
    name: str,
    max_concurrent: int,
    max_failures: int,
    progress: Progress,
    restore: bool = False,
) -> dict[str, TrialOutcome]:
    """Run one Tune experiment (``<experiment>/ray/tune/<name>``) over ``cfgs``; one outcome per run id.

    ``restore=True`` restores that experiment (``Tuner.restore(..., resume_errored=True)``) instead of
    starting it; ``cfgs`` is then only used to label the outcomes.
    """
    from ray import tune

    global _ACTIVE_PROGRESS
    _ACTIVE_PROGRESS = progress
    storage = ExperimentPaths(Path(opts.experiment_root)).ray_dir / "tune"
    storage.mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(tune_trial, _trial_resources)
    exp_path = storage / name
    run_config = tune.RunConfig(
        name=name,
        storage_path=str(storage.resolve()),
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=max_failures),
        callbacks=[_progress_callback_class()()],
    )
    if restore:
        tuner = tune.Tuner.restore(str(exp_path.resolve()), trainable=trainable, resume_errored=True)
    else:
        if exp_path.exists():
            shutil.rmtree(exp_path)
        param_space = {
            "trial": tune.grid_search(
                [{"run_id": c.run_id, "run": c.to_dict(include_derived=False)} for c in cfgs]
            ),
            "opts": asdict(opts),
        }
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            run_config=run_config,
            tune_config=tune.TuneConfig(
                max_concurrent_trials=max_concurrent,
                reuse_actors=False,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
        )
    grid = tuner.fit()
    outcomes: dict[str, TrialOutcome] = {}
    for result in grid:
        run_id = _trial_run_id(result.config) or "?"
        metrics = result.metrics or {}
        path = str(result.path) if getattr(result, "path", None) else None
        if result.error is not None:
            err = str(result.error).strip().splitlines()
            outcomes[run_id] = TrialOutcome(run_id, "error", error=_short_error(err), trial_path=path)
        elif metrics.get("busy"):
            outcomes[run_id] = TrialOutcome(run_id, "busy", trial_path=path, lock=metrics.get("lock"))
        elif metrics.get("done"):
            outcomes[run_id] = TrialOutcome(
                run_id, "finished", trial_path=path, best_value=metrics.get("best_value")
            )
        else:
            outcomes[run_id] = TrialOutcome(run_id, "incomplete", trial_path=path)
    return outcomes


def _trial_run_id(config: dict | None) -> str | None:
    """The run id a trial of :func:`run_trials` carries in its config (``{"trial": {"run_id": ...}}``)."""
    return ((config or {}).get("trial") or {}).get("run_id")


def _short_error(lines: list[str]) -> str:
    """The most telling line of a Ray error (the innermost exception)."""
    for line in reversed(lines):
        s = line.strip()
        if s and not s.startswith(("File ", "^", "~")) and ":" in s:
            return s[:400]
    return (lines[-1] if lines else "unknown error")[:400]


def can_restore(experiment_root: str | os.PathLike, name: str) -> bool:
    from ray import tune

    path = ExperimentPaths(Path(experiment_root)).ray_dir / "tune" / name
    return path.is_dir() and tune.Tuner.can_restore(str(path.resolve()))


@contextlib.contextmanager
def ray_session(address: str | None, **kwargs: Any):
    """``start_ray`` ... ``stop_ray`` (a local Ray is shut down; a joined cluster only disconnected)."""
    info = start_ray(address, **kwargs)
    try:
        yield info
    finally:
        stop_ray()


__all__ = [
    "start_ray",
    "stop_ray",
    "ray_running",
    "ray_session",
    "RayInfo",
    "TrialOptions",
    "TrialOutcome",
    "Progress",
    "tune_trial",
    "train_loop_per_worker",
    "fit_with_train",
    "run_trials",
    "can_restore",
    "busy_lock",
    "wait_for_lock",
    "restore_from_checkpoint_dir",
    "checkpoint_epoch",
    "trial_resources",
    "default_concurrency",
    "ray_start_resources_arg",
    "TRIAL_DRIVER",
    "RAY_ENV",
]
