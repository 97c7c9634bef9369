"""An :class:`~suite.experiment_spec.ExperimentSpec` made concrete: the space's defaults, the run configs,
the plan (prerequisites added, deduplicated) and the experiment.json record. The Tune driver and both SLURM
modes start here, so they run the same runs under the same name and record them the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from search_spaces import get_space
from suite.config import RunConfig
from suite.experiment import ExperimentRecord, describe_data, run_entry
from suite.experiment_spec import ExperimentSpec
from suite.paths import ExperimentPaths
from suite.planner import Plan, build_plan


def resolve(spec: ExperimentSpec) -> ExperimentSpec:
    """``spec`` with the space's default preset and seeds filled in (InputError for an unknown space)."""
    sp = get_space(spec.space)
    return spec.replace(
        preset=spec.preset or sp.default_preset,
        seeds=tuple(sp.default_seeds) if spec.seeds is None else spec.seeds,
    )


def run_configs(spec: ExperimentSpec, data_hash: str) -> list[RunConfig]:
    """The requested runs of a resolved spec (no prerequisites), with the fields the launcher sets."""
    base: dict[str, Any] = {"data": spec.data, "data_hash": data_hash, "world_size": spec.workers_per_trial}
    return get_space(spec.space).configs(
        spec.preset,
        spec.seeds,
        labeled=spec.labeled,
        overrides=spec.overrides,
        base=base,
        search=spec.search,
        num_samples=spec.num_samples,
        search_seed=spec.search_seed,
        methods=spec.methods,
    )


@dataclass
class Expanded:
    """A resolved spec with its plan and the prepared data's hash and cohort."""

    spec: ExperimentSpec
    plan: Plan
    data_hash: str
    cohort: dict[str, Any] = field(default_factory=dict)

    @property
    def exp(self) -> ExperimentPaths:
        return ExperimentPaths(self.spec.root)

    def plan_lines(self) -> list[str]:
        """What a launch of this experiment would run, by dependency phase, finished runs counted apart
        (``suite tune --dry-run``)."""
        finished = {rid for rid in self.plan.runs if self.exp.run(rid).is_finished()}
        levels = self.plan.levels(finished)
        todo = sum(len(level) for level in levels)
        requested = set(self.plan.requested)
        lines = [
            f"# dry run: nothing started; experiment {self.exp.root}",
            f"# runs: {len(self.plan.runs)} ({len(requested)} asked for by the space {self.spec.space!r}, "
            f"{len(self.plan.runs) - len(requested)} prerequisites), {len(finished)} finished and skipped, "
            f"{todo} to run",
        ]
        for k, level in enumerate(levels):
            what = "without unfinished prerequisites" if k == 0 else f"after phase {k}"
            lines.append(f"# phase {k + 1}: {len(level)} run(s) {what}")
            lines += [f"#   {rid}" for rid in level]
        return lines

    def record(self) -> ExperimentRecord:
        """What experiment.json says about this launch (merged by ``suite.experiment.record_launch``)."""
        from suite.provenance import git_sha, versions

        spec, sp = self.spec, get_space(self.spec.space)
        search: str | dict[str, Any] = "grid"
        if spec.search != "grid":
            search = {"mode": spec.search, "num_samples": spec.num_samples, "search_seed": spec.search_seed}
        return ExperimentRecord(
            name=spec.name,
            launcher=spec.launcher,
            data=spec.data,
            data_hash=self.data_hash,
            preset=spec.preset,
            space=spec.space,
            space_description=sp.description,
            seeds=list(spec.seeds or ()),
            labeled=list(spec.labeled or sp.default_labeled),
            methods=list(spec.methods) if spec.methods else None,
            overrides=list(spec.overrides),
            search=search,
            cohort=self.cohort,
            git_sha=git_sha(),
            versions=versions(),
            runs={rid: run_entry(c, rid in self.plan.requested) for rid, c in self.plan.runs.items()},
        )


def expand(spec: ExperimentSpec, configs: list[RunConfig] | None = None) -> Expanded:
    """Resolve ``spec``, read its prepared data and plan its runs (``configs``: these runs instead of the
    space's grid, prerequisites added as usual)."""
    spec = resolve(spec)
    data_hash, cohort = describe_data(spec.data)
    cfgs = run_configs(spec, data_hash) if configs is None else list(configs)
    return Expanded(spec=spec, plan=build_plan(cfgs), data_hash=data_hash, cohort=cohort)
