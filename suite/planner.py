"""The plan of an experiment: which runs, in which dependency order, longest first.

Every launcher plans with this module (the Tune driver, the SLURM array and allocation modes), so that they
agree on what an experiment is:

* :func:`build_plan` adds every prerequisite of the requested runs (``RunConfig.prerequisites()``: the
  regressor of a Proposed run, the FS model of a Proposals run, recursively) and deduplicates by ``run_id``,
  so the regressor of (n, split, seed) that 15 Proposed runs share is one run;
* :meth:`Plan.levels` groups the unfinished runs by dependency level (a run's level is one more than the
  highest level of its unfinished prerequisites), each level longest run first (:func:`cost_rank`): SLURM
  array mode submits one array per level, chained with ``--dependency=afterany`` on the previous one;
* :meth:`Plan.ready` gives the runs whose prerequisites have all finished, longest first: what the Tune
  driver releases next when it dispatches by dependency instead of level by level;
* :meth:`Plan.blocked` names the runs that can never start because a prerequisite failed.

Plain data and pure functions: no Ray, no submitit, no file access (the caller says which runs are done).
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from suite.config import RunConfig


@dataclass
class Plan:
    """All runs of an experiment (requested + prerequisites), deduplicated, with their dependencies.

    ``runs`` keeps a stable order: every prerequisite before the first run that needs it."""

    runs: dict[str, RunConfig]  # run_id -> config
    requested: list[str]  # the runs the space asked for (the others are only prerequisites)
    deps: dict[str, list[str]]  # run_id -> direct prerequisite run_ids

    def closure(self, run_id: str) -> list[str]:
        """Every prerequisite of ``run_id``, direct or not (prerequisites of prerequisites first)."""
        out: list[str] = []
        for d in self.deps.get(run_id, []):
            for r in [*self.closure(d), d]:
                if r not in out:
                    out.append(r)
        return out

    def levels(self, done: Collection[str]) -> list[list[str]]:
        """The runs not in ``done`` by dependency level; within a level, longest expected runs first.

        Level 0 holds every run whose prerequisites are all done (or that has none); a run whose last
        unfinished prerequisite is at level k is at level k + 1."""
        level: dict[str, int] = {}

        def lv(rid: str) -> int:
            if rid not in level:
                level[rid] = max((lv(d) + 1 for d in self.deps.get(rid, []) if d not in done), default=0)
            return level[rid]

        out: dict[int, list[str]] = collections.defaultdict(list)
        for rid in self.runs:
            if rid not in done:
                out[lv(rid)].append(rid)
        return [self.longest_first(out[k]) for k in sorted(out)]

    def ready(self, done: Collection[str], exclude: Collection[str] = ()) -> list[str]:
        """Runs not done and not in ``exclude`` whose direct prerequisites are all in ``done``, longest
        first (what can start now)."""
        return self.longest_first(
            rid
            for rid in self.runs
            if rid not in done and rid not in exclude and all(d in done for d in self.deps.get(rid, []))
        )

    def blocked(self, failed: Collection[str]) -> list[str]:
        """Runs that need (directly or not) a run in ``failed``: they cannot start in this launch."""
        return [rid for rid in self.runs if any(d in failed for d in self.closure(rid))]

    def longest_first(self, run_ids: Iterable[str]) -> list[str]:
        """``run_ids`` sorted by :func:`cost_rank` (stable: the plan's order breaks ties)."""
        return sorted(run_ids, key=lambda r: cost_rank(self.runs[r]))


def build_plan(cfgs: Iterable[RunConfig]) -> Plan:
    """Add prerequisites (recursively) and deduplicate by ``run_id`` (prerequisites placed first)."""
    runs: dict[str, RunConfig] = {}
    deps: dict[str, list[str]] = {}
    requested: list[str] = []

    def add(cfg: RunConfig) -> str:
        rid = cfg.run_id
        if rid in runs:
            return rid
        pre_ids = [add(p) for p in cfg.prerequisites()]
        runs[rid] = cfg
        deps[rid] = pre_ids
        return rid

    for cfg in cfgs:
        rid = add(cfg)
        if rid not in requested:
            requested.append(rid)
    return Plan(runs=runs, requested=requested, deps=deps)


def cost_rank(cfg: RunConfig) -> tuple[int, int]:
    """Sort key putting the runs expected to take longest first: those that pass over the unlabeled images
    every epoch (Proposed, Oracle, Proposals, any run with an ``ssl`` term), then regressors, then FS; more
    epochs first within each.
    Starting the longest first keeps a long run from ending alone on an otherwise idle machine
    (longest-processing-time-first: on the fidelity grid it removed a ~4.5 min single-run tail)."""
    if cfg.stage == "regressor":
        return (1, -cfg.reg_epochs)
    if cfg.method == "fs" and cfg.ssl == "none":
        return (2, -cfg.seg_epochs)
    return (0, -(cfg.seg_epochs - cfg.penalty_warmup))
