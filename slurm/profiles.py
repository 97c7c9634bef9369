"""Named SLURM resource profiles (YAML data in ``slurm/profiles/``) and the sbatch script they produce.

A profile says *where and with what* a job runs: partition, account, qos, nodes, GPUs per node, CPUs per
task, memory, time limit, constraint, extra ``#SBATCH`` lines and shell setup lines. ``--profile`` takes a
shipped name (``local``, ``gpu-1node``, ``gpu-2node``) or a path to a YAML file with the same keys.

Every key is checked when the profile is loaded (unknown keys list the valid ones; bad values name the
field, the problem and the fix) and, before a real submission, against the cluster itself
(:func:`check_against_cluster`: partition exists, enough nodes/CPUs/memory/GPUs per node), so that an
unsatisfiable request is one clear line instead of a job pending forever.

:func:`submitit_parameters` turns a profile and a launch mode into the parameters of submitit's
``SlurmExecutor`` (``slurm.sbatch.render_sbatch`` renders the script submitit submits for them).
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from suite.errors import InputError
from suite.yaml_input import read_yaml

MODES = ("ray", "array")

# sbatch options the launcher sets itself: a profile's extra_sbatch must not override them
_RESERVED_SBATCH = {
    "array",
    "output",
    "error",
    "open-mode",
    "signal",
    "job-name",
    "nodes",
    "ntasks",
    "ntasks-per-node",
    "cpus-per-task",
    "gpus-per-node",
    "mem",
    "time",
    "partition",
    "account",
    "qos",
    "constraint",
    "dependency",
    "wckey",
    "J",
    "N",
    "n",
    "c",
    "t",
    "p",
    "A",
    "q",
    "C",
    "o",
    "e",
    "d",
}
_FIELD_OF_RESERVED = {
    "nodes": "nodes",
    "N": "nodes",
    "cpus-per-task": "cpus_per_task",
    "c": "cpus_per_task",
    "gpus-per-node": "gpus_per_node",
    "mem": "mem",
    "time": "time",
    "t": "time",
    "partition": "partition",
    "p": "partition",
    "account": "account",
    "A": "account",
    "qos": "qos",
    "q": "qos",
    "constraint": "constraint",
    "C": "constraint",
}


@dataclass(frozen=True)
class Profile:
    """One SLURM resource profile. ``None`` means: the cluster's default (no ``#SBATCH`` line)."""

    name: str = "custom"
    description: str = ""
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = 1  # ray mode: nodes of the one allocation (head + workers); array mode: must be 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1  # ray mode: the CPUs Ray gets on each node; array mode: CPUs of one run
    mem: str | None = None  # per node, sbatch syntax: "64G", "500M", "0" (all of the node's memory)
    time: str = "01:00:00"  # time limit: minutes, HH:MM:SS, D-HH:MM:SS, ...
    constraint: str | None = None
    extra_sbatch: tuple[str, ...] = ()  # further sbatch options, e.g. "--exclusive", "--mail-type=END"
    setup: tuple[str, ...] = ()  # shell lines run before the job (module load ..., source venv/bin/activate)
    signal_delay_s: int = 120  # USR2 this long before the time limit: checkpoint, then requeue
    max_requeues: int = 3  # time-limit requeues per job (preemptions do not count)
    array_parallelism: int = 16  # array mode: at most this many array tasks at once (--max-parallel)
    python: str | None = None  # python on the nodes (default: the interpreter that submits)

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str) -> Profile:
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a mapping of profile keys, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise InputError(
                f"{source}: unknown profile key(s) {', '.join(unknown)}; valid keys: "
                f"{', '.join(cls.field_names())}"
            )
        kwargs = {k: _coerce(k, v, source) for k, v in data.items()}
        prof = cls(**kwargs)
        prof.validate(source)
        return prof

    def replace(self, **changes: Any) -> Profile:
        prof = dataclasses.replace(self, **changes)
        prof.validate(f"profile {self.name!r}")
        return prof

    # ------------------------------------------------------------------ validation
    def validate(self, source: str) -> None:
        def bad(key: str, msg: str) -> InputError:
            return InputError(f"{source}: field {key}={getattr(self, key)!r} {msg}")

        for key in ("nodes", "cpus_per_task", "array_parallelism"):
            if getattr(self, key) < 1:
                raise bad(key, "must be >= 1")
        for key in ("gpus_per_node", "max_requeues", "signal_delay_s"):
            if getattr(self, key) < 0:
                raise bad(key, "must be >= 0")
        for key in ("partition", "account", "qos", "constraint", "name"):
            v = getattr(self, key)
            if v is not None and (not v or any(c.isspace() for c in v)):
                raise bad(
                    key, "must be a non-empty word without spaces (or left out for the cluster default)"
                )
        if self.mem is not None:
            mem_mb(self.mem, source)
        minutes = time_minutes(self.time, source)
        if self.signal_delay_s >= minutes * 60:
            raise bad("signal_delay_s", f"must be shorter than the time limit ({minutes} min); lower it")
        for line in self.extra_sbatch:
            opt = _sbatch_option_name(line)
            if opt is None:
                raise InputError(
                    f"{source}: extra_sbatch entry {line!r} is not an sbatch option; write it like "
                    "'--exclusive' or '--mail-type=END'"
                )
            if opt in _RESERVED_SBATCH:
                if opt in _FIELD_OF_RESERVED:
                    raise InputError(
                        f"{source}: extra_sbatch entry {line!r} sets -{'-' * (len(opt) > 1)}{opt}; "
                        f"use the profile field {_FIELD_OF_RESERVED[opt]} instead"
                    )
                raise InputError(
                    f"{source}: extra_sbatch entry {line!r} sets -{'-' * (len(opt) > 1)}{opt}, "
                    "which the launcher sets itself; remove it"
                )
        for line in self.setup:
            if "\n" in line:
                raise InputError(f"{source}: setup entry {line!r} spans lines; give one shell line per entry")

    def check_mode(self, mode: str, source: str | None = None) -> None:
        """Reject a profile that cannot serve the launch mode."""
        source = source or f"profile {self.name!r}"
        if mode not in MODES:
            raise InputError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "array" and self.nodes != 1:
            raise InputError(
                f"{source}: nodes={self.nodes} but --mode array runs one run per one-node array task; "
                "use --mode ray for a multi-node allocation or a profile with nodes: 1"
            )

    @property
    def time_min(self) -> int:
        return time_minutes(self.time, f"profile {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["extra_sbatch"] = list(self.extra_sbatch)
        d["setup"] = list(self.setup)
        return d


def _coerce(key: str, value: Any, source: str) -> Any:
    f = next(f for f in fields(Profile) if f.name == key)
    default = f.default if f.default is not dataclasses.MISSING else None
    try:
        if key in ("extra_sbatch", "setup"):
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list | tuple) or not all(isinstance(x, str) for x in value):
                raise ValueError
            return tuple(x.strip() for x in value)
        if key in ("mem", "time"):
            if value is None and key == "mem":
                return None
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ValueError
            return str(value)
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError
            return value
        # optional strings
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError
        return str(value)
    except ValueError:
        want = {"extra_sbatch": "a list of strings", "setup": "a list of strings"}.get(
            key, "an integer" if isinstance(default, int) else "a string"
        )
        raise InputError(f"{source}: field {key}={value!r} has the wrong type; expected {want}") from None


def _sbatch_option_name(line: str) -> str | None:
    m = re.fullmatch(r"(?:#SBATCH\s+)?--([A-Za-z][A-Za-z0-9-]*)(?:[= ].*)?", line.strip())
    if m:
        return m.group(1)
    m = re.fullmatch(r"(?:#SBATCH\s+)?-([A-Za-z])(?:[= ]?.*)?", line.strip())
    return m.group(1) if m else None


_MEM_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def mem_mb(text: str, source: str = "profile") -> int:
    """Memory in MiB from sbatch syntax (``64G``, ``500M``, ``64GB``; no unit = MiB; ``0`` = whole node)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTkmgt])?(?:i?[Bb])?\s*", str(text))
    if not m:
        raise InputError(f"{source}: field mem={text!r} is not a memory size; write it like 64G, 500M or 0")
    unit = (m.group(2) or "M").upper()
    return int(math.ceil(float(m.group(1)) * _MEM_UNITS[unit]))


def mem_sbatch(text: str) -> str:
    """Normalised sbatch form (``64G``, ``500M``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTkmgt])?(?:i?[Bb])?\s*", str(text))
    assert m is not None
    num, unit = m.group(1), (m.group(2) or "M").upper()
    if "." in num:
        return f"{mem_mb(text)}M"
    return f"{num}{unit}"


def time_minutes(text: str | int, source: str = "profile") -> int:
    """A SLURM time limit in whole minutes (rounded up). Accepts minutes, MM:SS, HH:MM:SS, D-HH,
    D-HH:MM, D-HH:MM:SS."""
    s = str(text).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
    if not m or s in ("0",):
        raise InputError(
            f"{source}: field time={text!r} is not a positive SLURM time limit; write it like 90 (minutes), "
            "02:00:00 or 1-12:00:00"
        )
    days, a, b, c = m.group(1), m.group(2), m.group(3), m.group(4)
    if days is not None:  # D-HH[:MM[:SS]]
        secs = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # HH:MM:SS
        secs = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # MM:SS
        secs = int(a) * 60 + int(b)
    else:  # minutes
        secs = int(a) * 60
    if secs <= 0:
        raise InputError(f"{source}: field time={text!r} must be longer than 0; write it like 02:00:00")
    return max(1, math.ceil(secs / 60))


# ---------------------------------------------------------------------- loading
def profiles_dir() -> Path:
    return Path(__file__).resolve().parent / "profiles"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name, or a YAML file by path (``*.yaml``/``*.yml`` or an existing file)."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if text_name in available_profiles():
        path = profiles_dir() / f"{text_name}.yaml"
        source = f"profile {text_name!r} ({path})"
    elif path.suffix in (".yaml", ".yml") or path.exists():
        source = str(path)
    else:
        raise InputError(
            f"--profile {text_name!r}: no such profile; available: {', '.join(available_profiles())} "
            "(or give a path to a .yaml file)"
        )
    data = read_yaml(path, "profile", source, InputError) or {}
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return Profile.from_dict(data, source=source)


# ---------------------------------------------------------------------- submitit parameters
def submitit_parameters(
    profile: Profile, mode: str, *, job_name: str = "suite", max_parallel: int | None = None
) -> dict[str, Any]:
    """Parameters for ``submitit.SlurmExecutor.update_parameters`` (sbatch names, submitit spelling).

    Ray mode submits one task: on several nodes the allocation gets ``--nodes=N`` (one task per node, so
    ``--cpus-per-task`` and ``--gpus-per-node`` hold on every node) while the driver runs as a single
    ``srun --nodes=1 --ntasks=1`` step on the first node and starts the Ray workers on the others itself.
    """
    profile.check_mode(mode)
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": profile.time_min,
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": profile.cpus_per_task,
        "signal_delay_s": profile.signal_delay_s,
        "stderr_to_stdout": False,
    }
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(profile, key) is not None:
            params[key] = getattr(profile, key)
    if profile.gpus_per_node:
        params["gpus_per_node"] = profile.gpus_per_node
    if profile.mem is not None:
        params["mem"] = mem_sbatch(profile.mem)
    if profile.setup:
        params["setup"] = list(profile.setup)
    additional: dict[str, Any] = {}
    for line in profile.extra_sbatch:
        opt = _sbatch_option_name(line)
        assert opt is not None
        body = line.strip().split("--", 1)[1] if "--" in line else line.strip().lstrip("-")
        value: Any = True
        if "=" in body:
            value = body.split("=", 1)[1]
        elif " " in body:
            value = body.split(" ", 1)[1].strip()
        additional[opt.replace("-", "_")] = value
    # srun does not pass --cpus-per-task on to the step in every SLURM version (22.05 does not): say it
    srun_args = [f"--cpus-per-task={profile.cpus_per_task}"]
    if mode == "ray":
        if profile.nodes > 1:
            # the allocation spans N nodes, submitit still sees one task (one result file): the driver is one
            # step on the first node and starts the Ray workers on the others with srun --overlap
            additional["nodes"] = profile.nodes
            srun_args = ["--nodes=1", "--ntasks=1"] + srun_args
    else:
        params["array_parallelism"] = max_parallel or profile.array_parallelism
    params["srun_args"] = srun_args
    if additional:
        params["additional_parameters"] = additional
    return params


# ---------------------------------------------------------------------- cluster checks
def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def cluster_reachable() -> bool:
    return _run(["sinfo", "-h", "-o", "%P"]) is not None


def check_against_cluster(profile: Profile, source: str | None = None) -> None:
    """Reject a request the cluster cannot satisfy (one clear line), using ``sinfo``.

    Checks: the partition exists (default partition when none is named), enough nodes in it, CPUs,
    memory and (for GPUs) a ``gpu`` GRES on its nodes. Silent when ``sinfo`` is unavailable.
    """
    source = source or f"profile {profile.name!r}"
    out = _run(["sinfo", "-h", "-N", "-o", "%N|%P|%c|%m|%G"])
    if out is None:
        return
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 4]
    parts = {r[1] for r in rows}
    default = next((p.rstrip("*") for p in parts if p.endswith("*")), None)
    want = profile.partition or default
    names = sorted({p.rstrip("*") for p in parts})
    if want is None:
        raise InputError(
            f"{source}: no partition given and the cluster has no default; set partition to one "
            f"of {', '.join(names)}"
        )
    nodes = [r for r in rows if r[1].rstrip("*") == want]
    if not nodes:
        raise InputError(
            f"{source}: partition {want!r} does not exist on this cluster; use one of {', '.join(names)}"
        )
    hosts = {r[0] for r in nodes}
    if profile.nodes > len(hosts):
        raise InputError(
            f"{source}: nodes={profile.nodes} but partition {want!r} has {len(hosts)} node(s); lower nodes"
        )
    max_cpus = max(int(re.sub(r"\D", "", r[2]) or 0) for r in nodes)
    if profile.cpus_per_task > max_cpus:
        raise InputError(
            f"{source}: cpus_per_task={profile.cpus_per_task} but the nodes of {want!r} have at most "
            f"{max_cpus} CPUs; lower cpus_per_task"
        )
    if profile.mem is not None and mem_mb(profile.mem) > 0:
        max_mem = max(int(re.sub(r"\D", "", r[3]) or 0) for r in nodes)
        if mem_mb(profile.mem) > max_mem:
            raise InputError(
                f"{source}: mem={profile.mem} but the nodes of {want!r} have at most {max_mem} MB; lower mem"
            )
    if profile.gpus_per_node:
        best = 0
        for r in nodes:
            for gres in r[4].split(","):
                m = re.match(r"gpu(?::[^:(]+)?:(\d+)", gres)
                if m:
                    best = max(best, int(m.group(1)))
        if profile.gpus_per_node > best:
            raise InputError(
                f"{source}: gpus_per_node={profile.gpus_per_node} but the nodes of {want!r} have "
                f"{best or 'no'} GPU(s) (GRES {sorted({r[4] for r in nodes})}); lower gpus_per_node or pick "
                "a GPU partition"
            )


__all__ = [
    "Profile",
    "MODES",
    "load_profile",
    "available_profiles",
    "submitit_parameters",
    "check_against_cluster",
    "cluster_reachable",
    "time_minutes",
    "mem_mb",
]
