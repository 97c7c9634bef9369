"""Start a quiet local Ray or join a cluster: its environment, temp dirs and the trial-driver resource.

:func:`start_ray` starts a local Ray (``address="local"``, own temp dir, dashboard and every server on
127.0.0.1, token auth off, usage stats off, a ``trial_driver`` custom resource) or connects to an existing
cluster (``address=...``, the SLURM launcher). Ray itself is imported inside the functions: the launchers read
the constants here without loading it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
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
    "RAY_AUTH_MODE": "disabled",  # 2.60 turns token auth on and writes ~/.ray/auth_token
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


@contextlib.contextmanager
def ray_session(address: str | None, **kwargs: Any) -> Iterator[RayInfo]:
    """``start_ray`` ... ``stop_ray`` (a local Ray is shut down; a joined cluster only disconnected)."""
    info = start_ray(address, **kwargs)
    try:
        yield info
    finally:
        stop_ray()
