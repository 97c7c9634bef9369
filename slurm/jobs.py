"""What runs inside a SLURM job: the submitit callables of ``suite slurm``.

* :class:`RunTask` (array mode): one run (``suite.stages.runner.execute``); a dependant first checks that its
  prerequisites finished and otherwise fails with a line naming the prerequisite and its log.
* :class:`RayAllocationJob` (ray mode): starts Ray (locally, or head + workers over the allocation's hosts:
  ``slurm.ray_cluster``), runs the Tune driver of ``suite tune`` against it, stops Ray.

Both are ``submitit.helpers.Checkpointable``: on the time-limit or preemption signal (USR2) submitit calls
``checkpoint`` (the inherited one resubmits the same call) and requeues the job; the rerun resumes from the
run directories (finished runs skipped, partial ones continued from ``checkpoint_last.pt``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import submitit

from slurm.ledger import jsonable, run_log_hint
from slurm.ray_cluster import (
    RayNodes,
    allocation_hosts,
    cpus_per_node,
    drop_local_ray_settings,
    gpus_per_node,
    ray_env,
)
from suite.atomic import write_json_atomic
from suite.config import RunConfig
from suite.experiment import now_iso
from suite.experiment_spec import ExperimentSpec
from suite.paths import ExperimentPaths
from suite.ray_glue.cluster import auth_token_env

log = logging.getLogger("slurm.jobs")


def _job_setup(launcher: str) -> None:
    from suite.log import setup_logging

    os.environ.setdefault("SUITE_NO_PBAR", "1")
    os.environ["SUITE_LAUNCHER"] = launcher
    setup_logging()


def job_ids() -> dict[str, str | None]:
    """The SLURM ids of the running job (recorded in results and failure files)."""
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
    """One array task: one run (``suite.stages.runner.execute``). On USR2 submitit calls :meth:`checkpoint`
    (the inherited one resubmits the same call) and requeues; the rerun resumes from
    ``checkpoint_last.pt``."""

    def __call__(
        self, cfg_dict: dict[str, Any], experiment: str, check_prerequisites: bool
    ) -> dict[str, Any]:
        _job_setup("slurm-array")
        from suite.stages.runner import execute

        cfg = RunConfig.from_dict(cfg_dict, source="slurm task")
        exp = ExperimentPaths(Path(experiment))
        paths = exp.run(cfg.run_id)
        if check_prerequisites:
            for pre in cfg.prerequisites():
                pre_paths = exp.run(pre.run_id)
                if not pre_paths.is_finished():
                    msg = (
                        f"prerequisite {pre.run_id} of {cfg.run_id} is {pre_paths.status()} "
                        f"(log: {run_log_hint(exp, pre.run_id)})"
                    )
                    if not paths.is_finished():
                        write_json_atomic(
                            paths.failed,
                            {
                                "run_id": cfg.run_id,
                                "error": f"PrerequisiteError: {msg}",
                                "prerequisite": pre.run_id,
                                "at": now_iso(),
                                **job_ids(),
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
            **job_ids(),
        }


class RayAllocationJob(submitit.helpers.Checkpointable):
    """The one-allocation job: start Ray (locally, or head + workers over the allocation's hosts), run the
    Tune driver of ``suite tune`` against it, stop Ray. Requeued on USR2; the rerun resumes from the run
    directories (and Tune's own experiment state where the driver keeps one).

    ``spec_dict``: a resolved :class:`~suite.experiment_spec.ExperimentSpec` as a dict; ``ray_port``: the
    head's GCS port on several nodes (default: a free one); ``simulate_nodes`` (testing): start this many
    Ray nodes (head + workers) on the one local host."""

    def __call__(
        self, spec_dict: dict[str, Any], ray_port: int | None = None, simulate_nodes: int = 0
    ) -> dict[str, Any]:
        _job_setup("slurm-ray")
        spec = ExperimentSpec.from_dict(spec_dict)
        for k, v in ray_env().items():
            os.environ.setdefault(k, v)
        hosts = allocation_hosts()
        cluster: RayNodes | None = None
        address = None
        t0 = time.time()
        n_nodes = simulate_nodes or len(hosts)
        if n_nodes > 1:
            drop_local_ray_settings(os.environ)  # the driver joins a multi-node cluster (before Ray's import)
            # token authentication for every node and the driver: one token per job in a 0600 file under
            # the experiment (a filesystem every node reads), handed to the `ray start` steps by environment
            os.environ.update(auth_token_env(ExperimentPaths(spec.root).ray_dir / "auth"))
            if simulate_nodes:
                hosts = [hosts[0]] * simulate_nodes
            cluster = RayNodes(
                hosts,
                job_tag=os.environ.get("SLURM_JOB_ID", str(os.getpid())),
                port=ray_port,
                cpus=cpus_per_node(len(hosts), bool(simulate_nodes)),
                gpus=gpus_per_node(),
            )
            address = cluster.start()
        try:
            result = run_driver(spec, address)
        finally:
            if cluster is not None:
                cluster.stop()
        return {
            "runs": {p.run_id: p.status() for p in ExperimentPaths(spec.root).all_runs()},
            "ray_nodes": n_nodes,
            "address": address,
            "driver": jsonable(result),
            "ok": bool(result.get("ok")) if isinstance(result, dict) else False,
            "wall_s": round(time.time() - t0, 2),
            **job_ids(),
        }

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # the Ray processes of this allocation end with the job; the rerun starts them again
        RayNodes.stop_all()
        return super().checkpoint(*args, **kwargs)


def run_driver(spec: ExperimentSpec, address: str | None) -> dict[str, Any]:
    """Run the Tune driver of ``suite tune`` (:func:`search_spaces.driver.run_experiment`) for ``spec``,
    against ``address`` (a Ray cluster started here) or, with ``None``, a local Ray sized to the job's
    CPUs."""
    from search_spaces.driver import run_experiment

    changes: dict[str, Any] = {"address": address, "resume": True, "launcher": "slurm-ray"}
    if address is None:
        changes["num_cpus"] = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)
    return run_experiment(spec.replace(**changes))
