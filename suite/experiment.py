"""``RESULTS/<experiment>/experiment.json``: what an experiment asked for, written by one function.

Every launcher (``suite run``, the Tune driver, ``suite slurm`` in both modes) describes its launch as an
:class:`ExperimentRecord` and calls :func:`record_launch`, which merges it into the file:

* the **identity** of a space experiment (``space``, ``preset``, ``data_hash``, ``overrides``,
  ``search``) must match the file's: another grid in the same folder would mix two experiments (InputError
  naming the key and the fix, ``--experiment NAME``). A record without a space (``suite run``, one run at
  a time) is not checked;
* ``seeds`` and ``labeled`` become the union of every launch (sorted); ``methods`` too, where ``None`` (every
  method of the space) absorbs any list;
* ``runs`` (run id -> stage, method, n, seed, requested) is the union, a run's latest entry winning except
  that ``requested`` stays true once a launch asked for it;
* ``created_at`` stays the first launch's; the provenance (``git_sha``, ``versions``, ``launcher``,
  ``data``, ``cohort``, ``space_description``) is the latest launch's; ``launches`` gains this launch (the
  last 50 kept);
* keys this version does not know are kept as they were.

``schema_version`` 2 is this layout. Files written before it (no ``schema_version``: ``created`` instead of
``created_at``, the experiment's name under ``experiment``) are read and upgraded on the next launch.
analysis/ reads the file as a plain dict (``name``, ``cohort``, provenance), old or new.
"""

from __future__ import annotations

import collections
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from suite.atomic import write_json_atomic
from suite.config import RunConfig
from suite.errors import InputError
from suite.paths import ExperimentPaths

SCHEMA_VERSION = 2
IDENTITY_KEYS = ("space", "preset", "data_hash", "overrides", "search")
MAX_LAUNCHES = 50  # launches kept in the file (a relaunch loop must not grow it without bound)
LOCK_TIMEOUT_S = 60.0


def now_iso() -> str:
    """The current UTC time as ``2026-01-31T12:00:00+00:00`` (every time stamp the launchers record)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_entry(cfg: RunConfig, requested: bool) -> dict[str, Any]:
    """What experiment.json says about one run of the plan."""
    return {
        "stage": cfg.stage,
        "method": cfg.method if cfg.stage == "segmenter" else "regressor",
        "n_labeled": cfg.n_labeled,
        "seed": cfg.seed,
        "requested": requested,
    }


@dataclass
class ExperimentRecord:
    """The content of experiment.json (see the module docstring for the merge rules)."""

    name: str
    launcher: str  # local | ray | slurm-ray | slurm-array
    data: str
    data_hash: str
    preset: str | None = None
    space: str | None = None  # None: runs launched one at a time (suite run)
    space_description: str = ""
    seeds: list[int] = field(default_factory=list)
    labeled: list[int] = field(default_factory=list)
    methods: list[str] | None = None  # None: every method of the space
    overrides: list[str] = field(default_factory=list)
    search: str | dict[str, Any] = "grid"
    cohort: dict[str, Any] = field(default_factory=dict)
    git_sha: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    launches: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as read
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**extra, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "experiment.json") -> ExperimentRecord:
        """Read a record of any schema version (1: the layout before ``schema_version`` existed)."""
        if not isinstance(d, dict):
            raise InputError(f"{source}: not a JSON object; fix or delete it")
        d = dict(d)
        version = d.pop("schema_version", 1)
        if version == 1:
            d.setdefault("created_at", d.pop("created", ""))
            d.setdefault("name", d.pop("experiment", ""))
        elif version != SCHEMA_VERSION:
            raise InputError(
                f"{source}: schema_version {version!r} is not one this version reads (1, {SCHEMA_VERSION}); "
                "update the suite, or use --experiment NAME for a new experiment"
            )
        known = {f.name for f in fields(cls)} - {"extra", "schema_version"}
        values = {k: v for k, v in d.items() if k in known}
        for key, value in values.items():
            kinds = _KINDS.get(key, (str,))
            if not isinstance(value, kinds) or (isinstance(value, list) and not _scalars(value)):
                raise InputError(
                    f"{source}: field {key}={value!r:.60} has the wrong type "
                    f"({' or '.join('null' if k is type(None) else k.__name__ for k in kinds)} expected); "
                    "fix or delete the file"
                )
        values.setdefault("name", "")
        values.setdefault("launcher", "")
        values.setdefault("data", "")
        values.setdefault("data_hash", "")
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**values, extra=extra)

    def identity_clash(self, old: ExperimentRecord) -> tuple[str, Any, Any] | None:
        """The first identity key (:data:`IDENTITY_KEYS`) on which this space experiment differs from
        ``old``'s, as (key, old value, this value); None when they are one experiment or this record has no
        space (a run launched alone); an old record without one clashes on ``space``."""
        if self.space is None:
            return None
        for key in IDENTITY_KEYS:
            was, now = getattr(old, key), getattr(self, key)
            if was != now:
                return key, was, now
        return None

    def merged_into(self, old: ExperimentRecord, source: str = "experiment.json") -> ExperimentRecord:
        """This launch's record merged into the file's ``old`` one (raises InputError on another identity)."""
        if self.space is None:  # one run launched alone: the folder's experiment stays what it was
            kept = ("space", "preset", "space_description", "overrides", "search", "methods")
            asked = {k: getattr(old, k) for k in kept}
        else:
            clash = self.identity_clash(old)
            if clash is not None:
                key, was, now = clash
                raise InputError(
                    f"{source}: this experiment folder was made with {key}={was!r}, now {now!r}; "
                    "use --experiment NAME for a new experiment (or the same options)"
                )
            methods = None
            if old.methods is not None and self.methods is not None:
                methods = _union(old.methods, self.methods)
            asked = {"methods": methods}
        runs = {**old.runs}
        for rid, entry in self.runs.items():
            requested = bool(entry.get("requested")) or bool(runs.get(rid, {}).get("requested"))
            runs[rid] = {**entry, "requested": requested}
        return ExperimentRecord(
            **{
                **asdict(self),
                **asked,
                "name": self.name or old.name,
                "seeds": _union(old.seeds, self.seeds),
                "labeled": _union(old.labeled, self.labeled),
                "cohort": self.cohort or old.cohort,
                "created_at": old.created_at or self.created_at,
                "runs": runs,
                "launches": [*old.launches, *self.launches][-MAX_LAUNCHES:],
                "extra": {**old.extra, **self.extra},
                "schema_version": SCHEMA_VERSION,
            }
        )


_KINDS: dict[str, tuple[type, ...]] = {
    "preset": (str, type(None)),
    "space": (str, type(None)),
    "seeds": (list,),
    "labeled": (list,),
    "methods": (list, type(None)),
    "overrides": (list,),
    "search": (str, dict),
    "cohort": (dict,),
    "versions": (dict,),
    "runs": (dict,),
    "launches": (list,),
}


def _scalars(items: list[Any]) -> bool:
    return all(isinstance(x, str | int | float | dict) for x in items)


def _union(a: list[Any], b: list[Any]) -> list[Any]:
    return sorted(set(a) | set(b))


def read_record(exp: ExperimentPaths) -> ExperimentRecord | None:
    """The experiment's record, or None when it has none (InputError when the file is unreadable)."""
    path = exp.experiment
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable ({e}); fix or delete it") from e
    return ExperimentRecord.from_dict(doc, source=str(path))


def record_launch(exp: ExperimentPaths, record: ExperimentRecord, launch: dict[str, Any]) -> ExperimentRecord:
    """Merge ``record`` (this launch) into ``exp``'s experiment.json, append ``launch`` and write the file
    atomically; returns what was written. Held under a file lock: launches into one experiment at the same
    time (several ``suite run`` in parallel) must not lose each other's runs."""
    from filelock import FileLock, Timeout

    exp.root.mkdir(parents=True, exist_ok=True)
    new = ExperimentRecord(**{**asdict(record), "launches": [launch]})
    if not new.created_at:
        new.created_at = str(launch.get("at") or now_iso())
    try:
        with FileLock(str(exp.experiment_lock), timeout=LOCK_TIMEOUT_S):
            old = read_record(exp)
            out = new if old is None else new.merged_into(old, source=str(exp.experiment))
            write_json_atomic(exp.experiment, out.to_dict())
    except Timeout as e:
        raise InputError(
            f"{exp.experiment_lock}: held for {LOCK_TIMEOUT_S:.0f} s by another launcher; wait for it, or "
            "delete the lock file if no launcher is running"
        ) from e
    return out


def describe_data(data: str | Path) -> tuple[str, dict[str, Any]]:
    """(data hash, cohort description) of a prepared dataset (raises InputError when it is not one)."""
    from suite.data.dataset import PreparedData

    prepared = PreparedData.open(data)
    cohort: dict[str, Any] = {}
    manifest = getattr(prepared, "manifest", None)
    if isinstance(manifest, dict):
        for key in ("source", "n_patients", "n_volumes", "n_slices", "size", "format"):
            if key in manifest:
                cohort[key] = manifest[key]
        groups = collections.Counter(
            p.get("group") for p in manifest.get("patients", []) if isinstance(p, dict)
        )
        if groups:
            cohort["groups"] = dict(sorted((str(k), v) for k, v in groups.items()))
    return str(prepared.data_hash), cohort
