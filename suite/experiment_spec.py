"""``ExperimentSpec``: one experiment as asked, the same for ``suite tune``, the Tune driver and
``suite slurm``.

What to run (a search space, preset, seeds, n, methods, ``--set`` overrides, grid or random search), where
its results go (``out/<experiment>``) and how the Ray Tune driver runs it (resources, failures, resume).
Every rule that does not need the space is checked when the spec is made, so a Python caller is refused
exactly what the CLI refuses (:class:`~suite.errors.InputError`, one line, exit code 2 through the CLI);
the space's own rules (its name, seeds, n, methods, swept axes) are checked by ``search_spaces`` when it is
expanded. Paths are made absolute at construction: a spec is pickled into SLURM jobs as a plain dict
(:meth:`to_dict` / :meth:`from_dict`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from suite.errors import InputError
from suite.paths import output_folder

SEARCH_MODES = ("grid", "random")
LAUNCHERS = ("ray", "slurm-ray", "slurm-array")
LAUNCHER_KEYS = ("data", "data_hash", "world_size")  # run-config fields the launcher sets, never --set
# options of the Ray Tune driver (SLURM array mode runs without Ray and refuses them), with their defaults
RAY_OPTIONS = {
    "address": None,
    "gpus_per_trial": 0.0,
    "workers_per_trial": 1,
    "cpus_per_trial": None,
    "max_concurrent": None,
    "max_failures": 1,
    "use_train": None,
    "num_cpus": None,
}


@dataclass(frozen=True)
class ExperimentSpec:
    """One experiment (see the module docstring). ``preset``/``seeds`` ``None``: the space's defaults
    (``search_spaces.resolve`` fills them in); ``experiment`` ``None``: ``<space>-<preset>``."""

    data: str  # prepared dataset folder
    space: str = "smoke"
    preset: str | None = None
    seeds: tuple[int, ...] | None = None
    out: str = "results"
    experiment: str | None = None
    labeled: tuple[int, ...] | None = None
    methods: tuple[str, ...] | None = None
    overrides: tuple[str, ...] = ()
    search: str = "grid"
    num_samples: int | None = None
    search_seed: int = 0
    # the Ray Tune driver
    address: str | None = None  # join a running Ray cluster instead of starting one
    gpus_per_trial: float = 0.0  # fractions pack trials on a GPU; per worker with DDP
    workers_per_trial: int = 1  # > 1: DDP through Ray Train (world_size is part of the run id)
    cpus_per_trial: float | None = None  # default: the config's threads
    max_concurrent: int | None = None  # default: as many as the resources fit
    max_failures: int = 1  # retries of a crashed trial from its checkpoint
    use_train: bool | None = None  # single-worker trials through Ray Train too
    num_cpus: int | None = None  # a local Ray's CPUs
    resume: bool = True  # recorded; every launch resumes from the run directories alone
    launcher: str = "ray"  # recorded in experiment.json

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen: normalise once, here
        if not isinstance(self.data, str | Path) or not str(self.data):
            raise InputError(f"data={self.data!r}: give the prepared dataset folder (suite prepare OUT)")
        set_("data", str(Path(self.data).resolve()))
        if not isinstance(self.out, str | Path) or not str(self.out):
            raise InputError(f"--out {self.out!r}: give a results folder")
        set_("out", str(output_folder(Path(self.out).resolve(), "--out")))
        for key in ("seeds", "labeled"):
            value = getattr(self, key)
            if value is not None:
                set_(key, tuple(_integer(f"--{key}", v) for v in _sequence(f"--{key}", value)))
        if self.methods is not None:
            set_("methods", tuple(_text("--methods", m) for m in _sequence("--methods", self.methods)))
        set_("overrides", tuple(_text("--set", o) for o in _sequence("--set", self.overrides)))
        for item in self.overrides:
            if item.split("=", 1)[0].strip() in LAUNCHER_KEYS:
                raise InputError(
                    f"--set {item}: set by the launcher; use --data / --workers-per-trial instead"
                )
        _text("--space", self.space)
        if self.preset is not None:
            _text("--preset", self.preset)
        if self.experiment is not None:
            name = _text("--experiment", self.experiment)
            if "/" in name or name.startswith("."):
                raise InputError(
                    f"--experiment {name!r}: a folder name without '/' and not starting with '.'"
                )
        if self.search not in SEARCH_MODES:
            raise InputError(f"--search {self.search!r}: must be one of {', '.join(SEARCH_MODES)}")
        if self.num_samples is not None and _integer("--num-samples", self.num_samples) < 1:
            raise InputError(f"--num-samples {self.num_samples}: must be >= 1")
        _integer("--search-seed", self.search_seed, minimum=None)
        self._check_ray_options()
        if self.launcher not in LAUNCHERS:
            raise InputError(f"launcher={self.launcher!r}: must be one of {', '.join(LAUNCHERS)}")
        if not isinstance(self.resume, bool):
            raise InputError(f"resume={self.resume!r}: must be true or false")

    def _check_ray_options(self) -> None:
        workers = _integer("--workers-per-trial", self.workers_per_trial, minimum=1)
        gpus = _number("--gpus-per-trial", self.gpus_per_trial, minimum=0.0)
        if workers > 1 and 0 < gpus < 1:
            raise InputError(
                f"--gpus-per-trial {gpus} with --workers-per-trial {workers}: "
                "DDP ranks need a whole GPU each (fractions are for single-worker trials)"
            )
        if self.cpus_per_trial is not None and _number("--cpus-per-trial", self.cpus_per_trial) <= 0:
            raise InputError(f"--cpus-per-trial {self.cpus_per_trial}: must be > 0")
        if self.max_concurrent is not None:
            _integer("--max-concurrent", self.max_concurrent, minimum=1)
        _integer("--max-failures", self.max_failures, minimum=0)
        if self.num_cpus is not None:
            _integer("--num-cpus", self.num_cpus, minimum=1)
        if self.use_train not in (None, True, False):
            raise InputError(f"use_train={self.use_train!r}: must be true, false or unset")
        if self.address is not None:
            _text("--address", self.address)

    @property
    def name(self) -> str:
        """The experiment folder's name (needs the preset: ``search_spaces.resolve`` fills it in)."""
        if self.experiment:
            return self.experiment
        if self.preset is None:
            raise ValueError("ExperimentSpec.name needs a preset: resolve the spec against its space first")
        return f"{self.space}-{self.preset}"

    @property
    def root(self) -> Path:
        """``out/<experiment>``."""
        return Path(self.out) / self.name

    def ray_options_set(self) -> list[str]:
        """The Ray driver options given a value other than their default (SLURM array mode refuses them)."""
        return [k for k, default in RAY_OPTIONS.items() if getattr(self, k) != default]

    def replace(self, **changes: Any) -> ExperimentSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(
                f"experiment spec: unknown key(s) {', '.join(unknown)}; valid: {', '.join(known)}"
            )
        return cls(**d)


def _sequence(option: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise InputError(f"{option} {value!r}: give a list of values")
    return tuple(value)


def _text(option: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{option} {value!r}: must be a non-empty string")
    return value


def _integer(option: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{option} {value!r}: must be a whole number")
    if minimum is not None and value < minimum:
        raise InputError(f"{option} {value}: must be >= {minimum}")
    return value


def _number(option: str, value: Any, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{option} {value!r}: must be a finite number")
    if minimum is not None and value < minimum:
        raise InputError(f"{option} {value}: must be >= {minimum:g}")
    return float(value)
