"""A multi-node Ray cluster inside one SLURM allocation: a head on the first host and a worker on each other
host, each an ``srun --overlap --mem=0 -N1 -n1 -w HOST ray start ... --block`` step with its own ports and
temp dir (several nodes, or several jobs, on one host do not meet). Used by the allocation job of
``suite slurm --mode ray`` when the allocation has more than one node (or simulates several on one host).
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
from pathlib import Path

import submitit

log = logging.getLogger("slurm.ray_cluster")


def ray_env() -> dict[str, str]:
    """Environment of every Ray process (token auth on: the token's path comes from the job)."""
    from suite.ray_glue.cluster import RAY_ENV

    return dict(RAY_ENV)


def drop_local_ray_settings(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Remove the local-mode-only Ray settings from ``env`` (in place; returned). With
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (what a local Ray sets) ``ray start --address`` refuses to join
    ("Multi-node Ray clusters are not supported") and a driver resolves its own address to loopback; a job
    submitted from a process that had run a local Ray used to inherit it through sbatch's environment
    export."""
    from suite.ray_glue.cluster import RAY_LOCAL_ENV

    for k in RAY_LOCAL_ENV:
        env.pop(k, None)
    return env


def cluster_env() -> dict[str, str]:
    """Environment of a ``ray start`` of a multi-node cluster: the suite's Ray settings, no local-mode
    ones."""
    return dict(drop_local_ray_settings({**os.environ, **ray_env()}))


def allocation_hosts() -> list[str]:
    try:
        env = submitit.JobEnvironment()
        hosts = list(env.hostnames)
    except RuntimeError:
        hosts = []
    return hosts or [socket.gethostname()]


def cpus_per_node(n_nodes: int, simulated: bool) -> int:
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)
    if simulated:  # several Ray nodes share one host: split its CPUs
        return max(1, cpus // n_nodes)
    return cpus


def gpus_per_node() -> int:
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
            cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, env=cluster_env()
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
