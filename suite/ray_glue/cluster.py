"""Start a quiet local Ray or join a cluster: its environment, temp dirs and the trial-driver resource.

:func:`start_ray` starts a local Ray (``address="local"``, own temp dir, dashboard and every server on
127.0.0.1, token auth off, usage stats off, a ``trial_driver`` custom resource) or connects to an existing
cluster (``address=...``, the SLURM launcher). Ray itself is imported inside the functions: the launchers read
the constants here without loading it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.errors import InputError
from suite.ray_glue.signals import preemption_signal_blocked

log = logging.getLogger("suite.ray_glue")

TRIAL_DRIVER = "trial_driver"  # custom resource held by a Train trial's driver (not a CPU)
TRIAL_DRIVER_UNITS = 1000

# Set before Ray starts (inherited by the raylet and every worker).
RAY_ENV = {
    # token authentication on for every Ray the suite starts: without it anyone who can reach the dashboard
    # (any user on a shared node; anyone on the network for a multi-node head) can submit jobs that run as
    # the user. The token itself comes from RAY_AUTH_TOKEN_PATH (see auth_token_env).
    "RAY_AUTH_MODE": "token",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",  # TorchTrainer start-up 16-21 s -> 8-11 s here
    "RAY_DEDUP_LOGS": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # the legacy reporter is silent at verbose=0 (the new one prints tables)
    # OpenMP threads that spin while waiting make trials sharing cores 10-50x slower (BENCHMARKS.md);
    # the wait policy does not change any number
    "OMP_WAIT_POLICY": "PASSIVE",
}
# Local mode only: resolve the node IP to 127.0.0.1 so that GCS, raylet, workers, dashboard and agents all
# listen on loopback (Ray binds its gRPC servers to the node IP when that is 127.0.0.1).
RAY_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


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


AUTH_TOKEN_FILE = "ray_auth_token"


def short_temp_dir(key: str) -> str:
    """A short per-experiment temp dir (Ray's unix sockets must fit in 107 characters)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"/tmp/sray-{os.getuid()}-{digest}"


def private_dir(path: str | os.PathLike) -> Path:
    """``path`` created (or re-moded) 0700: Ray makes its own session folders 0777, so the folder above them
    is what keeps other users on the node out of the sockets, logs and the auth token."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    os.chmod(p, 0o700)
    return p


def auth_token_env(folder: str | os.PathLike) -> dict[str, str]:
    """The environment that hands every Ray process (GCS, raylet, dashboard, workers, and the ``ray start``
    nodes of a multi-node job) one token: ``folder/ray_auth_token``, mode 0600 (read by the user alone;
    ``folder`` is made private too).

    The token is one random value per process, written into each such file: Ray's client caches the token
    it first loaded for the life of the process, so a second Ray started by the same process (a test
    session, a requeued driver) must be given the same token or its own GCS refuses the driver."""
    global _process_token
    if _process_token is None:
        _process_token = secrets.token_hex(32)
    path = private_dir(folder) / AUTH_TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as f:
        f.write(_process_token)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


_process_token: str | None = None


def read_auth_token() -> str | None:
    """The token of the Ray this process started (None when token auth is off here)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).read_text().strip() if path and Path(path).exists() else None


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
    local = address in (None, "", "local")
    for k, v in RAY_ENV.items():
        if k == "RAY_AUTH_MODE" and not local:
            continue  # a cluster the suite did not start keeps its own auth settings (its admin's choice)
        os.environ.setdefault(k, v)
    saved_env = {k: os.environ.get(k) for k in RAY_LOCAL_ENV}
    if local:
        for k, v in RAY_LOCAL_ENV.items():
            os.environ[k] = v
    try:
        return _start_ray(address, local, num_cpus, num_gpus, temp_dir, object_store_mb)
    finally:
        # the Ray processes started above have read it; a process this one starts later (sbatch, srun) must
        # not inherit it: `ray start --address` on a worker node refuses to join with it set to 0
        for k, saved in saved_env.items():
            if saved is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = saved


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
            # Ray makes its temp dir 0777: it goes one level down, inside a private (0700) folder that also
            # holds a fresh auth token; stop_ray removes the folder
            private_dir(tmp)
            os.environ.update(auth_token_env(tmp))
            _started_temp_dirs.append(tmp)
            kwargs.update(
                address="local",
                _temp_dir=os.path.join(tmp, "ray"),
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
        _reload_auth_settings()
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
            except Exception as e:  # Ray's fixed 30 s raylet wait fails on an overloaded host
                if "timed out during startup" not in str(e) or attempt == attempts:
                    raise
                log.warning(
                    "ray start timed out (overloaded machine?); retrying (%d/%d)", attempt + 1, attempts
                )
                with contextlib.suppress(Exception):
                    ray.shutdown()
                _kill_children_using(str(kwargs["_temp_dir"]))
                tmp = f"{temp_dir or short_temp_dir(str(os.getpid()))}-{attempt + 1}"
                private_dir(tmp)
                _started_temp_dirs.append(tmp)
                kwargs["_temp_dir"] = os.path.join(tmp, "ray")
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


def _reload_auth_settings() -> None:
    """Make this process's Ray client read RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH as they are now.

    Ray's C++ config reads them once, when ``ray`` is first imported, and caches the token it loads: a process
    that imported ray before the suite set them (a test session, a notebook) would start a token-protected GCS
    and then connect to it without the token ("InvalidAuthToken"). These are the two calls Ray's own test
    utilities use for this (``ray._private.authentication_test_utils.reset_auth_token_state``)."""
    # looked up at run time: Ray's type stub of its compiled ``_raylet`` module does not declare them
    raylet = importlib.import_module("ray._raylet")
    config = getattr(raylet, "Config", None)
    loader = getattr(raylet, "AuthenticationTokenLoader", None)
    if config is None or loader is None:  # pragma: no cover - an older Ray without token authentication
        return
    config.initialize("")
    loader.instance().reset_cache()


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


# temp dirs of the local Rays this process started: removed when it stops them (sockets, logs, the token)
_started_temp_dirs: list[str] = []


def stop_ray() -> None:
    """Shut down (local) or disconnect from (joined) Ray; a local Ray's private temp dir is removed."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    while _started_temp_dirs:
        folder = _started_temp_dirs.pop()
        shutil.rmtree(folder, ignore_errors=True)
        # a process started later (sbatch, srun, another Ray) must not inherit a path to a removed token
        if os.environ.get("RAY_AUTH_TOKEN_PATH", "").startswith(folder + os.sep):
            del os.environ["RAY_AUTH_TOKEN_PATH"]


def count_alive_nodes(address: str) -> int:
    """Connect to the Ray cluster at ``address`` (once per process; :func:`stop_ray` disconnects) and count
    its live nodes. Raises ``ConnectionError``, ``RuntimeError`` or ``ValueError`` while its head is not
    up."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def ray_start_resources_arg() -> str:
    """The ``ray start`` argument that declares the trial-driver resource (for cluster launchers)."""
    return "--resources=" + json.dumps({TRIAL_DRIVER: TRIAL_DRIVER_UNITS})


@contextlib.contextmanager
def ray_session(address: str | None, **kwargs: Any) -> Iterator[RayInfo]:
    """``start_ray`` ... ``stop_ray`` (a local Ray is shut down; a joined cluster only disconnected)."""
    info = start_ray(address, **kwargs)
    try:
        yield info
    finally:
        stop_ray()
