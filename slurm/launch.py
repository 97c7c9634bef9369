"""Submit an experiment to SLURM with submitit, in one of two modes.

**ray** (the main mode): one allocation, Ray inside. One submitit job (:class:`RayAllocationJob`). On one node
it runs the same Tune driver as ``suite tune`` (which starts Ray locally); on several nodes it starts the Ray
head on the first host and a worker on each other host (``srun --overlap --mem=0 -N1 -n1 -w HOST ray start
... --block``, each with its own ports and temp dir), runs the driver against that cluster through its
``address``, and stops the Ray processes at the end.

**array**: no Ray. One array task per run (:class:`RunTask`), two arrays: the runs without prerequisites
(regressors, FS models and any other independent run) first, then the runs that need them, submitted with
``--dependency=afterany:<first array>``. ``afterany`` and not ``afterok``: a failed prerequisite must not
leave its dependants pending forever; each dependant checks its prerequisite's run directory and, when it is
not finished, fails with a line that names the prerequisite and its log. ``--max-parallel`` caps simultaneous
array tasks (submitit's ``array_parallelism``).

Both modes: every job is a ``submitit.helpers.Checkpointable``; on the time-limit or preemption signal
(USR2) submitit checkpoints and requeues it, and the job resumes from the run directories (finished runs are
skipped, partial runs continue from ``checkpoint_last.pt``: :func:`suite.stages.execute`). Re-submitting the
same experiment submits only the runs that are not finished.

Everything submitted is recorded under ``RESULTS/<experiment>/slurm/``: ``submissions.jsonl`` (one line per
sbatch: job id, mode, phase, parameters, log paths, the run of each array task), ``sbatch/<job>.sh`` (the
exact script text) and ``jobs/`` (submitit's folder: pickles and the job logs).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import submitit

from slurm.profiles import Profile, check_against_cluster, render_sbatch, submitit_parameters
from suite.atomic import write_json_atomic, write_text_atomic
from suite.config import RunConfig
from suite.errors import InputError
from suite.paths import ExperimentPaths, RunPaths

log = logging.getLogger("slurm.launch")

LEDGER = "submissions.jsonl"


# ---------------------------------------------------------------------------------------------- request
@dataclass(frozen=True)
class Request:
    """What to run (the same options as ``suite tune``) and where its results go. Plain data: pickled into
    the job."""

    experiment: str  # RESULTS/<experiment> (absolute)
    data: str  # prepared dataset (absolute)
    space: str = "smoke"
    preset: str | None = None
    seeds: tuple[int, ...] | None = None
    labeled: tuple[int, ...] | None = None
    overrides: tuple[str, ...] = ()
    max_concurrent: int | None = None  # ray mode: concurrent trials (driver option)
    gpus_per_trial: float | None = None  # ray mode
    workers_per_trial: int | None = None  # ray mode
    ray_port: int | None = None  # ray mode, several nodes: GCS port of the head (default: a free one)
    simulate_nodes: int = 0  # testing: start this many Ray nodes (head + workers) on the one local host

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def experiment_paths(req: Request) -> ExperimentPaths:
    return ExperimentPaths(Path(req.experiment))


def expand(req: Request) -> list[RunConfig]:
    """The grid's run configs (no prerequisites), with the dataset and its content hash filled in."""
    from search_spaces import get_space
    from suite.data.dataset import PreparedData

    data = PreparedData.open(req.data)
    space = get_space(req.space)
    return space.configs(
        req.preset,
        list(req.seeds) if req.seeds is not None else None,
        labeled=list(req.labeled) if req.labeled is not None else None,
        overrides=list(req.overrides),
        base={"data": str(Path(req.data).resolve()), "data_hash": data.data_hash},
    )


@dataclass
class Plan:
    """Array mode layout: phase 1 = runs without prerequisites (incl. every prerequisite), phase 2 = the
    runs that need them. Finished runs are listed in ``finished`` and submitted in neither phase."""

    phase1: list[RunConfig] = field(default_factory=list)
    phase2: list[RunConfig] = field(default_factory=list)
    finished: list[RunConfig] = field(default_factory=list)

    @property
    def all(self) -> list[RunConfig]:
        return self.phase1 + self.phase2 + self.finished


def plan(configs: Sequence[RunConfig], exp: ExperimentPaths) -> Plan:
    """Split a grid into the two dependency phases; skip runs whose directory says finished."""
    ordered: dict[str, tuple[int, RunConfig]] = {}
    for cfg in configs:
        for pre in cfg.prerequisites():
            ordered.setdefault(pre.run_id, (1, pre))
    for cfg in configs:
        phase = 2 if cfg.prerequisites() else 1
        ordered.setdefault(cfg.run_id, (phase, cfg))
    out = Plan()
    for run_id, (phase, cfg) in ordered.items():
        if exp.run(run_id).is_finished():
            out.finished.append(cfg)
        elif phase == 1:
            out.phase1.append(cfg)
        else:
            out.phase2.append(cfg)
    # regressors first inside phase 1 (the longest runs start first)
    out.phase1.sort(key=lambda c: 0 if c.stage == "regressor" else 1)
    return out


# ---------------------------------------------------------------------------------------------- jobs
def _job_setup(launcher: str) -> None:
    from suite.log import setup_logging

    os.environ.setdefault("SUITE_NO_PBAR", "1")
    os.environ["SUITE_LAUNCHER"] = launcher
    setup_logging()


def _job_ids() -> dict[str, str | None]:
    return {
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "slurm_restart_count": os.environ.get("SLURM_RESTART_COUNT", "0"),
        "host": socket.gethostname(),
    }


class PrerequisiteError(RuntimeError):
    """A dependant's prerequisite run did not finish (reported, never silently skipped)."""


class RunTask(submitit.helpers.Checkpointable):
    """One array task: one run (``suite.stages.execute``). On USR2 submitit calls :meth:`checkpoint` (the
    inherited one resubmits the same call) and requeues; the rerun resumes from ``checkpoint_last.pt``."""

    def __call__(
        self, cfg_dict: dict[str, Any], experiment: str, check_prerequisites: bool
    ) -> dict[str, Any]:
        _job_setup("slurm-array")
        from suite.stages import execute

        cfg = RunConfig.from_dict(cfg_dict, source="slurm task")
        exp = ExperimentPaths(Path(experiment))
        paths = exp.run(cfg.run_id)
        if check_prerequisites:
            for pre in cfg.prerequisites():
                pre_paths = exp.run(pre.run_id)
                if not pre_paths.is_finished():
                    msg = (
                        f"prerequisite {pre.run_id} of {cfg.run_id} is {pre_paths.status()} "
                        f"(log: {_run_log_hint(exp, pre.run_id)})"
                    )
                    if not paths.is_finished():
                        write_json_atomic(
                            paths.failed,
                            {
                                "run_id": cfg.run_id,
                                "error": f"PrerequisiteError: {msg}",
                                "prerequisite": pre.run_id,
                                "at": _now(),
                                **_job_ids(),
                            },
                        )
                    raise PrerequisiteError(msg)
        t0 = time.time()
        log.info("%s: starting in job %s", cfg.run_id, os.environ.get("SLURM_JOB_ID"))
        paths = execute(cfg, experiment)
        return {
            "run_id": cfg.run_id,
            "status": paths.status(),
            "wall_s": round(time.time() - t0, 2),
            **_job_ids(),
        }


class RayAllocationJob(submitit.helpers.Checkpointable):
    """The one-allocation job: start Ray (locally, or head + workers over the allocation's hosts), run the
    Tune driver of ``suite tune`` against it, stop Ray. Requeued on USR2; the rerun resumes from the run
    directories (and Tune's own experiment state where the driver keeps one)."""

    def __call__(self, req_dict: dict[str, Any]) -> dict[str, Any]:
        _job_setup("slurm-ray")
        fields: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in req_dict.items()}
        req = Request(**fields)
        for k, v in _ray_env().items():
            os.environ.setdefault(k, v)
        hosts = _allocation_hosts()
        cluster: RayNodes | None = None
        address = None
        t0 = time.time()
        n_nodes = req.simulate_nodes or len(hosts)
        if n_nodes > 1:
            _drop_local_ray_settings(
                os.environ
            )  # the driver joins a multi-node cluster (before Ray's import)
            if req.simulate_nodes:
                hosts = [hosts[0]] * req.simulate_nodes
            cluster = RayNodes(
                hosts,
                job_tag=os.environ.get("SLURM_JOB_ID", str(os.getpid())),
                port=req.ray_port,
                cpus=_cpus_per_node(len(hosts), bool(req.simulate_nodes)),
                gpus=_gpus_per_node(),
            )
            address = cluster.start()
        try:
            result = run_driver(req, address)
        finally:
            if cluster is not None:
                cluster.stop()
        exp = experiment_paths(req)
        runs = {p.run_id: p.status() for p in exp.all_runs()}
        return {
            "runs": runs,
            "ray_nodes": n_nodes,
            "address": address,
            "driver": _jsonable(result),
            "ok": bool(result.get("ok")) if isinstance(result, dict) else False,
            "wall_s": round(time.time() - t0, 2),
            **_job_ids(),
        }

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # the Ray processes of this allocation end with the job; the rerun starts them again
        RayNodes.stop_all()
        return super().checkpoint(*args, **kwargs)


def _jsonable(x: Any) -> Any:
    try:
        json.dumps(x)
        return x
    except (TypeError, ValueError):
        return repr(x)


def run_driver(req: Request, address: str | None) -> dict[str, Any]:
    """Run the Tune driver of ``suite tune`` (:func:`search_spaces.driver.run_experiment`) for this request,
    against ``address`` (a Ray cluster started here) or, with ``None``, a local Ray sized to the job's
    CPUs."""
    from search_spaces.driver import run_experiment

    root = Path(req.experiment)
    kwargs: dict[str, Any] = {}
    if address is None:
        kwargs["num_cpus"] = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)
    if req.max_concurrent is not None:
        kwargs["max_concurrent"] = req.max_concurrent
    if req.gpus_per_trial is not None:
        kwargs["gpus_per_trial"] = req.gpus_per_trial
    if req.workers_per_trial is not None:
        kwargs["workers_per_trial"] = req.workers_per_trial
    return run_experiment(
        req.data,
        space=req.space,
        preset=req.preset,
        seeds=list(req.seeds) if req.seeds is not None else None,
        out=str(root.parent),
        experiment=root.name,
        address=address,
        labeled=list(req.labeled) if req.labeled is not None else None,
        overrides=list(req.overrides),
        resume=True,
        launcher="slurm-ray",
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------- Ray nodes
def _ray_env() -> dict[str, str]:
    """Environment of every Ray process (token auth off: Ray 2.60 turns it on when ~/.ray/auth_token
    exists)."""
    from suite.ray_glue.cluster import RAY_ENV

    return dict(RAY_ENV)


def _drop_local_ray_settings(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Remove the local-mode-only Ray settings from ``env`` (in place; returned). With
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (what a local Ray sets) ``ray start --address`` refuses to join
    ("Multi-node Ray clusters are not supported") and a driver resolves its own address to loopback; a job
    submitted from a process that had run a local Ray used to inherit it through sbatch's environment
    export."""
    from suite.ray_glue.cluster import RAY_LOCAL_ENV

    for k in RAY_LOCAL_ENV:
        env.pop(k, None)
    return env


def _cluster_env() -> dict[str, str]:
    """Environment of a ``ray start`` of a multi-node cluster: the suite's Ray settings, no local-mode
    ones."""
    return dict(_drop_local_ray_settings({**os.environ, **_ray_env()}))


def _allocation_hosts() -> list[str]:
    try:
        env = submitit.JobEnvironment()
        hosts = list(env.hostnames)
    except RuntimeError:
        hosts = []
    return hosts or [socket.gethostname()]


def _cpus_per_node(n_nodes: int, simulated: bool) -> int:
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)
    if simulated:  # several Ray nodes share one host: split its CPUs
        return max(1, cpus // n_nodes)
    return cpus


def _gpus_per_node() -> int:
    for var in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        v = os.environ.get(var, "")
        digits = v.split(":")[-1]
        if digits.isdigit():
            return int(digits)
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


WORKER_PORT_BASE = 10002  # Ray's default --min-worker-port
WORKER_PORTS = 1000  # worker ports per node (Ray's default range 10002-19999 split between up to ten nodes)
START_TRIES = 5  # `ray start` attempts per node (a raylet that misses Ray's 30 s registration wait exits)


class RayNodes:
    """Ray head + workers on the hosts of a SLURM allocation, each an ``srun --overlap --mem=0 -N1 -n1 -w
    HOST ray start ... --block`` step; every node gets its own ports and temp dir, so that several nodes
    (or several jobs) on one host do not meet."""

    _live: list[RayNodes] = []

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        job_tag: str,
        port: int | None = None,
        cpus: int = 1,
        gpus: int = 0,
        wait_s: float = 180.0,
    ) -> None:
        self.hosts = list(hosts)
        self.job_tag = job_tag
        self.port = port or free_port()
        self.cpus = cpus
        self.gpus = gpus
        self.wait_s = wait_s
        self.procs: list[subprocess.Popen] = []
        self._retries: dict[int, int] = {}
        head = self.hosts[0]
        if _is_local(head) and len(set(self.hosts)) == 1:
            self.head_ip = "127.0.0.1"  # several Ray nodes on this one host: nothing listens beyond loopback
        else:
            self.head_ip = _ip_of(head)
            others = [h for h in self.hosts if h != head]
            if self.head_ip.startswith("127.") and others:  # /etc/hosts maps the own name to 127.0.1.1
                self.head_ip = _route_ip_towards(_ip_of(others[0])) or self.head_ip
        self.address = f"{self.head_ip}:{self.port}"
        self.log_dir = Path(os.environ.get("SUBMITIT_FOLDER", "/tmp")).parent / "ray-nodes"

    def command(self, index: int) -> list[str]:
        """The ``srun ... ray start`` command line of node ``index`` (0 = head)."""
        host = self.hosts[index]
        ray_bin = str(Path(sys.executable).with_name("ray"))
        ports = [free_port() for _ in range(6)]
        srun = [
            "srun",
            "--overlap",
            "--mem=0",
            "-N1",
            "-n1",
            "-w",
            host,
            "--kill-on-bad-exit=0",
            f"--job-name=ray-{'head' if index == 0 else f'worker{index}'}",
        ]
        ray = [
            ray_bin,
            "start",
            "--block",
            "--disable-usage-stats",
            f"--num-cpus={self.cpus}",
            f"--num-gpus={self.gpus}",
            f"--resources={json.dumps(node_resources())}",
            f"--node-manager-port={ports[0]}",
            f"--object-manager-port={ports[1]}",
            f"--dashboard-agent-listen-port={ports[2]}",
            f"--dashboard-agent-grpc-port={ports[3]}",
            f"--metrics-export-port={ports[4]}",
            f"--runtime-env-agent-port={ports[5]}",
            # disjoint worker-port ranges: several nodes of one host never hand out the same port
            f"--min-worker-port={WORKER_PORT_BASE + index * WORKER_PORTS}",
            f"--max-worker-port={WORKER_PORT_BASE + (index + 1) * WORKER_PORTS - 1}",
        ]
        if index == 0:
            ray += [
                "--head",
                f"--port={self.port}",
                f"--node-ip-address={self.head_ip}",
                f"--temp-dir={self.temp_dir(0)}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={free_port()}",
                f"--ray-client-server-port={free_port()}",
            ]
        else:
            ray += [f"--address={self.address}"]
            if self.head_ip == "127.0.0.1":
                ray += ["--node-ip-address=127.0.0.1"]
        # the node's processes ignore the preemption signal (SLURM sends it to every process of every step):
        # only the submitit process acts on it, see suite.ray_glue.signals.preemption_signal_blocked
        return srun + ["bash", "-c", 'trap "" USR2; exec "$@"', "ray-node"] + ray

    def temp_dir(self, index: int) -> str:
        # short: Ray's unix socket paths must stay under ~107 characters
        return f"/tmp/suite-ray-{self.job_tag}-{index}"

    def start(self) -> str:
        """Start every node, wait until all have joined, return the address for ``ray.init``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        RayNodes._live.append(self)
        for i in range(len(self.hosts)):
            self.procs.append(self._launch(i))
            if i == 0:
                self._wait_nodes(1)
        self._wait_nodes(len(self.hosts))
        log.info("ray cluster up: %d node(s) at %s", len(self.hosts), self.address)
        return self.address

    def _launch(self, i: int) -> subprocess.Popen:
        cmd = self.command(i)
        logf = open(self.log_dir / f"{self.job_tag}-node{i}.log", "ab")  # the node's stdout while it runs
        log.info("ray node %d on %s: %s", i, self.hosts[i], shlex.join(cmd))
        return subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, env=_cluster_env()
        )

    def _wait_nodes(self, n: int) -> None:
        from suite.ray_glue.cluster import count_alive_nodes, stop_ray

        deadline = time.time() + self.wait_s
        last = -1
        while time.time() < deadline:
            for i, p in enumerate(self.procs):
                if p.poll() is not None:
                    # `ray start` gives a raylet 30 s (hard-coded) to register: a busy node can miss that
                    self._retries[i] = self._retries.get(i, 0) + 1
                    node_log = self.log_dir / f"{self.job_tag}-node{i}.log"
                    if self._retries[i] >= START_TRIES:
                        raise RuntimeError(
                            f"ray node {i} on {self.hosts[i]} exited with {p.returncode} "
                            f"({START_TRIES} tries); see {node_log}"
                        )
                    log.warning(
                        "ray node %d on %s exited with %s (try %d of %d); starting it again. Its log ends:"
                        "\n%s",
                        i,
                        self.hosts[i],
                        p.returncode,
                        self._retries[i],
                        START_TRIES,
                        _tail(node_log),
                    )
                    _kill_group(p)  # a raylet or agent of the failed try must not linger
                    time.sleep(2.0 * self._retries[i])
                    self.procs[i] = self._launch(i)
                    deadline = max(deadline, time.time() + 60.0)
            try:
                last = count_alive_nodes(self.address)
                if last >= n:
                    stop_ray()
                    return
            except (ConnectionError, RuntimeError, ValueError) as e:
                log.debug("waiting for the ray head: %s", e)
                stop_ray()
            time.sleep(1.0)
        raise RuntimeError(
            f"only {max(last, 0)} of {n} ray node(s) joined {self.address} in {self.wait_s:.0f}s; "
            f"see {self.log_dir}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """End the ``srun`` steps (SIGTERM: ``ray start --block`` stops its node), workers first."""
        try:
            from suite.ray_glue.cluster import stop_ray

            stop_ray()
        except Exception:  # noqa: BLE001 - best effort
            pass
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + timeout
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.procs.clear()
        if self in RayNodes._live:
            RayNodes._live.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for nodes in list(cls._live):
            nodes.stop(timeout=10.0)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e.strerror})"


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def node_resources() -> dict[str, float]:
    """Custom resources every Ray node declares: the Tune driver's ``trial_driver`` units (a Train trial's
    driver holds one instead of a CPU)."""
    from suite.ray_glue.cluster import TRIAL_DRIVER, TRIAL_DRIVER_UNITS

    return {TRIAL_DRIVER: TRIAL_DRIVER_UNITS}


def _is_local(host: str) -> bool:
    return host in (socket.gethostname(), socket.gethostname().split(".")[0], "localhost")


def _route_ip_towards(ip: str) -> str | None:
    """This host's address on the route to ``ip`` (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((ip, 9))
            return str(s.getsockname()[0])
    except OSError:
        return None


def _ip_of(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host


# ---------------------------------------------------------------------------------------------- submission
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _run_log_hint(exp: ExperimentPaths, run_id: str) -> str:
    rp = exp.run(run_id)
    if rp.log.exists():
        return str(rp.log)
    entry = run_jobs(exp).get(run_id)
    return entry["log_err"] if entry else str(rp.log)


def read_ledger(exp: ExperimentPaths) -> list[dict[str, Any]]:
    path = exp.slurm_dir / LEDGER
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def run_jobs(exp: ExperimentPaths) -> dict[str, dict[str, Any]]:
    """The latest array task of each run: ``{run_id: {job_id, log_out, log_err, submitted_at}}``."""
    out: dict[str, dict[str, Any]] = {}
    for sub in read_ledger(exp):
        for task in sub.get("tasks", []):
            out[task["run_id"]] = {**task, "submitted_at": sub.get("submitted_at"), "mode": sub.get("mode")}
    return out


def _append_ledger(exp: ExperimentPaths, entry: dict[str, Any]) -> None:
    path = exp.slurm_dir / LEDGER
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


@dataclass
class Submitted:
    """What one ``submit`` call did."""

    mode: str
    jobs: list[Any] = field(default_factory=list)  # submitit jobs (array mode: one per run)
    job_ids: list[str] = field(default_factory=list)  # one per sbatch (array ids / the allocation id)
    run_of_job: dict[str, str] = field(default_factory=dict)  # array task id → run_id
    plan: Plan | None = None
    submitted_at: float = 0.0
    dry_run_text: str = ""


def _executor(
    folder: Path,
    profile: Profile,
    mode: str,
    *,
    job_name: str,
    max_parallel: int | None,
    dependency: str | None = None,
) -> Any:
    from slurm.watch import WatchedSlurmExecutor

    python = profile.python or shlex.quote(sys.executable)
    ex = WatchedSlurmExecutor(folder=folder, max_num_timeout=profile.max_requeues, python=python)
    params = submitit_parameters(profile, mode, job_name=job_name, max_parallel=max_parallel)
    if dependency:
        params["dependency"] = dependency
    ex.update_parameters(**params)
    return ex


def _sbatch_text(ex: Any, map_count: int | None) -> str:
    from submitit.slurm.slurm import _make_sbatch_string

    params = dict(ex.parameters)
    if map_count and map_count > 1:
        params["map_count"] = map_count
    return _make_sbatch_string(command=ex._submitit_command_str, folder=ex.folder, **params)


def _record(
    exp: ExperimentPaths,
    *,
    mode: str,
    phase: str,
    job_id: str,
    ex: Any,
    profile: Profile,
    text: str,
    tasks: list[dict[str, Any]],
    req: Request,
    extra: dict[str, Any] | None = None,
) -> None:
    sbatch_path = exp.slurm_dir / "sbatch" / f"{job_id}.sh"
    write_text_atomic(sbatch_path, text)
    _append_ledger(
        exp,
        {
            "submitted_at": _now(),
            "mode": mode,
            "phase": phase,
            "job_id": job_id,
            "sbatch": str(sbatch_path),
            "parameters": _jsonable(dict(ex.parameters)),
            "profile": profile.to_dict(),
            "request": req.to_dict(),
            "tasks": tasks,
            "command": ["suite", *sys.argv[1:]] if Path(sys.argv[0]).name == "suite" else sys.argv,
            **(extra or {}),
        },
    )


def _write_experiment(
    exp: ExperimentPaths, req: Request, mode: str, profile: Profile, configs: Sequence[RunConfig], pl: Plan
) -> None:
    """``experiment.json`` in the Tune driver's format (array mode; the driver writes it in ray mode): create
    it, or check that an existing one asked for the same thing, and log this launch."""
    from search_spaces import get_space
    from suite.data.dataset import PreparedData
    from suite.provenance import git_sha, versions

    sp = get_space(req.space)
    preset = req.preset or sp.default_preset
    seeds = list(sp.default_seeds if req.seeds is None else req.seeds)
    data_hash = PreparedData.open(req.data).data_hash
    requested = {c.run_id for c in configs}
    record: dict[str, Any] = {
        "experiment": exp.root.name,
        "space": req.space,
        "space_description": sp.description,
        "preset": preset,
        "seeds": seeds,
        "labeled": list(req.labeled) if req.labeled else list(sp.default_labeled),
        "overrides": list(req.overrides),
        "search": "grid",
        "data": req.data,
        "data_hash": data_hash,
        "git_sha": git_sha(),
        "versions": versions(),
        "launcher": f"slurm-{mode}",
        "created": _now(),
        "runs": {
            c.run_id: {
                "stage": c.stage,
                "method": c.method if c.stage == "segmenter" else "regressor",
                "n_labeled": c.n_labeled,
                "seed": c.seed,
                "requested": c.run_id in requested,
            }
            for c in pl.all
        },
    }
    launch = {"at": _now(), "launcher": f"slurm-{mode}", "profile": profile.name}
    if exp.experiment.exists():
        try:
            old = json.loads(exp.experiment.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{exp.experiment}: unreadable ({e}); fix or delete it") from e
        for key in ("space", "preset", "data_hash", "overrides"):
            if old.get(key) != record.get(key):
                raise InputError(
                    f"{exp.experiment}: this experiment folder was made with {key}={old.get(key)!r}, now "
                    f"{record.get(key)!r}; use --experiment NAME for a new experiment (or the same options)"
                )
        merged = {
            **old,
            **{k: v for k, v in record.items() if k not in ("seeds", "labeled", "created", "runs")},
        }
        merged["seeds"] = sorted(set(old.get("seeds", [])) | set(seeds))
        merged["runs"] = {**old.get("runs", {}), **record["runs"]}
        launches = list(old.get("launches", []))
    else:
        merged, launches = record, []
    merged["launches"] = (launches + [launch])[-50:]
    write_json_atomic(exp.experiment, merged)


def submit(
    req: Request,
    profile: Profile,
    mode: str,
    *,
    dry_run: bool = False,
    max_parallel: int | None = None,
    check_cluster: bool = True,
    configs: Sequence[RunConfig] | None = None,
) -> Submitted:
    """Submit ``req`` in ``mode`` (``ray`` | ``array``) with ``profile``; with ``dry_run`` only render the
    sbatch script(s) and the job layout into ``Submitted.dry_run_text`` (nothing written, nothing submitted).

    ``configs`` (array mode) submits these run configs instead of the space's grid (their prerequisites are
    added as usual)."""
    profile.check_mode(mode)
    if configs is not None and mode != "array":
        raise InputError(
            "explicit run configs need --mode array (ray mode runs the space through the Tune driver)"
        )
    if max_parallel is not None and max_parallel < 1:
        raise InputError(f"--max-parallel {max_parallel}: must be >= 1")
    exp = experiment_paths(req)
    folder = exp.slurm_dir / "jobs" / "%j"
    name = f"suite-{exp.root.name}"
    configs = list(configs) if configs is not None else expand(req)
    pl = plan(configs, exp)
    out = Submitted(mode=mode, plan=pl)
    if dry_run:
        out.dry_run_text = _layout_text(req, profile, mode, pl, folder, name, max_parallel)
        return out
    if check_cluster:
        check_against_cluster(profile)
    exp.root.mkdir(parents=True, exist_ok=True)
    if mode == "array":
        _write_experiment(exp, req, mode, profile, configs, pl)
    out.submitted_at = time.time()
    if mode == "ray":
        if not pl.phase1 and not pl.phase2:
            log.info("every run of %s is finished; nothing to submit", exp.root)
            return out
        ex = _executor(folder, profile, "ray", job_name=f"{name}-ray", max_parallel=None)
        job = ex.submit(RayAllocationJob(), req.to_dict())
        text = _sbatch_text(ex, None)
        _record(
            exp,
            mode="ray",
            phase="allocation",
            job_id=job.job_id,
            ex=ex,
            profile=profile,
            text=text,
            tasks=[],
            req=req,
            extra={
                "log_out": str(job.paths.stdout),
                "log_err": str(job.paths.stderr),
                "runs": [c.run_id for c in pl.phase1 + pl.phase2],
            },
        )
        out.jobs, out.job_ids = [job], [job.job_id]
        log.info("submitted ray allocation job %s (logs %s)", job.job_id, job.paths.stdout)
        return out
    dep = None
    for phase, cfgs, check in (("1", pl.phase1, False), ("2", pl.phase2, True)):
        if not cfgs:
            continue
        ex = _executor(
            folder,
            profile,
            "array",
            job_name=f"{name}-array{phase}",
            max_parallel=max_parallel,
            dependency=dep,
        )
        with ex.batch():
            jobs = [
                ex.submit(RunTask(), c.to_dict(include_derived=False), str(exp.root), check) for c in cfgs
            ]
        array_id = jobs[0].job_id.split("_")[0]
        text = _sbatch_text(ex, len(jobs))
        tasks = [
            {
                "run_id": c.run_id,
                "job_id": j.job_id,
                "log_out": str(j.paths.stdout),
                "log_err": str(j.paths.stderr),
            }
            for c, j in zip(cfgs, jobs, strict=True)
        ]
        _record(
            exp,
            mode="array",
            phase=phase,
            job_id=array_id,
            ex=ex,
            profile=profile,
            text=text,
            tasks=tasks,
            req=req,
            extra={"dependency": dep},
        )
        log.info(
            "submitted array %s (phase %s: %d run(s)%s)",
            array_id,
            phase,
            len(jobs),
            f", after {dep}" if dep else "",
        )
        out.jobs += jobs
        out.job_ids.append(array_id)
        out.run_of_job.update({j.job_id: c.run_id for c, j in zip(cfgs, jobs, strict=True)})
        dep = f"afterany:{array_id}"
    if not out.jobs:
        log.info("every run of %s is finished; nothing to submit", exp.root)
    return out


def _layout_text(
    req: Request, profile: Profile, mode: str, pl: Plan, folder: Path, name: str, max_parallel: int | None
) -> str:
    lines = [
        f"# dry run: nothing submitted; experiment {req.experiment}",
        f"# profile {profile.name}: {profile.nodes} node(s), {profile.cpus_per_task} CPU(s)/task, "
        f"{profile.gpus_per_node} GPU(s)/node, mem {profile.mem or 'cluster default'}, time {profile.time}",
        f"# runs: {len(pl.all)} ({len(pl.finished)} finished and skipped)",
    ]
    if mode == "ray":
        n = profile.nodes
        lines += [
            f"# layout: 1 job, {n} node(s); Ray "
            + (
                "local to the job"
                if n == 1
                else f"head on the first host, {n - 1} worker(s) via srun --overlap --mem=0 -N1 -n1 -w HOST "
                "ray start"
            ),
            f"# the job runs the suite tune driver for {len(pl.phase1) + len(pl.phase2)} run(s):",
        ]
        lines += [f"#   {c.run_id}" for c in pl.phase1 + pl.phase2]
        lines += ["", render_sbatch(profile, "ray", folder=folder, job_name=f"{name}-ray")]
        return "\n".join(lines)
    cap = max_parallel or profile.array_parallelism
    dep = None
    for phase, cfgs in (("1", pl.phase1), ("2", pl.phase2)):
        if not cfgs:
            continue
        what = "runs without prerequisites" if phase == "1" else "runs that need phase 1"
        lines.append(
            f"# array {phase}: {len(cfgs)} task(s), {what}, at most {cap} at once"
            + (", --dependency=afterany:<array 1>" if dep else "")
        )
        lines += [f"#   [{i}] {c.run_id}" for i, c in enumerate(cfgs)]
        dep = "afterany:<array 1 job id>" if phase == "1" else dep
    for phase, cfgs in (("1", pl.phase1), ("2", pl.phase2)):
        if not cfgs:
            continue
        lines += [
            "",
            f"# ---- sbatch script of array {phase}",
            render_sbatch(
                profile,
                "array",
                folder=folder,
                job_name=f"{name}-array{phase}",
                array_size=len(cfgs),
                max_parallel=max_parallel,
                dependency="afterany:<array 1 job id>" if phase == "2" and pl.phase1 else None,
            ),
        ]
    if not pl.phase1 and not pl.phase2:
        lines.append("# nothing to submit: every run is finished")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- waiting
@dataclass
class Outcome:
    run_id: str
    job_id: str
    ok: bool
    status: str  # run directory status after the job
    error: str = ""
    log: str = ""


def wait(sub: Submitted, exp: ExperimentPaths, timeout_s: float | None = None) -> list[Outcome]:
    """Wait for every job of ``sub``; a job that dies without a result is reported (never waited on forever:
    the queue and the completion log stand in for ``sacct``). One failure does not stop the others."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    deadline = None if timeout_s is None else time.time() + timeout_s
    outcomes: list[Outcome] = []
    pending = list(sub.jobs)
    while pending:
        still = []
        for job in pending:
            if job.done():
                outcomes.append(_outcome(job, sub, exp, FailedJobError, UncompletedJobError))
            else:
                still.append(job)
        pending = still
        if pending:
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(
                    f"{len(pending)} job(s) still running after {timeout_s:.0f}s: "
                    f"{', '.join(j.job_id for j in pending)}"
                )
            time.sleep(1.0)
    return outcomes


def _settled_state(job_id: str, state: str, timeout_s: float = 15.0) -> str:
    """The job's final SLURM state once it leaves RUNNING/COMPLETING (a job stopped by ``scancel`` can write
    its result while it is still COMPLETING: report CANCELLED, not the transient state), or ``state``."""
    from slurm.watch import FINAL_STATES, read_squeue

    deadline = time.time() + timeout_s
    while True:
        try:
            raw = read_squeue([job_id]).get(job_id, {}).get("RawState", "")
        except (OSError, subprocess.SubprocessError):
            return state
        if raw and raw.split()[0].upper() in FINAL_STATES:
            return raw
        if not raw or time.time() > deadline:
            return raw or state
        time.sleep(0.5)


def _outcome(
    job: Any,
    sub: Submitted,
    exp: ExperimentPaths,
    failed_t: type[Exception],
    uncompleted_t: type[Exception],
) -> Outcome:
    run_id = sub.run_of_job.get(job.job_id, "")
    try:
        res = job.result()
        if not run_id:  # the ray allocation: the driver's summary says whether every run finished
            ok = bool(res.get("ok")) if isinstance(res, dict) else False
            bad = (
                {}
                if not isinstance(res, dict)
                else {r: s for r, s in res.get("runs", {}).items() if s != "finished"}
            )
            return Outcome(
                "",
                job.job_id,
                ok=ok,
                status="finished" if ok else "incomplete",
                error="" if ok else f"{len(bad)} run(s) not finished: {', '.join(sorted(bad)[:5])}",
                log=str(job.paths.stdout),
            )
        status = exp.run(run_id).status()
        state = job.watcher.get_info(job.job_id, mode="cache").get("RawState", "") or job.state
        if status != "finished":
            state = _settled_state(job.job_id, state)
        return Outcome(
            run_id,
            job.job_id,
            ok=status == "finished",
            status=status,
            error="" if status == "finished" else f"job {job.job_id} ended {state} with the run {status}",
            log=str(job.paths.stdout),
        )
    except (failed_t, uncompleted_t) as e:
        first = [ln for ln in str(e).splitlines() if ln.strip()]
        err = next((ln for ln in reversed(first) if "Error" in ln), first[0] if first else repr(e))
        status = exp.run(run_id).status() if run_id else "failed"
        return Outcome(
            run_id, job.job_id, ok=False, status=status, error=err.strip(), log=str(job.paths.stderr)
        )


__all__ = [
    "Request",
    "Plan",
    "plan",
    "expand",
    "submit",
    "wait",
    "Submitted",
    "Outcome",
    "RunTask",
    "RayAllocationJob",
    "RayNodes",
    "read_ledger",
    "run_jobs",
    "PrerequisiteError",
    "RunPaths",
]
