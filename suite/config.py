"""One frozen run config per run, built from a named preset (YAML data), a YAML file, ``--set`` overrides
or a Ray trial dict. Unknown keys are rejected with the valid ones listed.

A run's identity (``run_id``) is a readable tag plus a short hash of the canonical JSON of the fields
that change its results *for its stage and method* (paths, device and analysis-only fields excluded), so
that e.g. one regressor of (n, split, seed) is shared by every gamma, lambda and method that needs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from suite.errors import ConfigError

STAGES = ("regressor", "segmenter")
METHODS = ("fs", "proposals", "proposed", "oracle")
SEG_METHODS_WITH_PENALTY = ("proposed", "oracle")
PRESETS = ("paper", "code", "smoke", "fidelity")


@dataclass(frozen=True)
class RunConfig:
    # --- what is run (experiment axes) ---
    stage: str = "segmenter"  # regressor | segmenter
    method: str = "fs"  # fs | proposals | proposed | oracle ("regressor" for the regressor stage)
    n_labeled: int = 5  # paper-scale count; the effective count for the cohort comes from splits.json
    seed: int = 0  # training seed (init, data order, augmentation)
    split_mode: str = "paper"  # paper | random
    split_seed: int = 1  # paper mode: the authors' random.seed(1); random mode: the labeled draw
    gamma: float = 0.1  # bound tightness: [(1-gamma) R, (1+gamma) R]
    lam: float = 1e-2  # penalty weight lambda
    penalty_warmup: int = 0  # first epochs without the unlabeled term (train as FS first); 0 = the paper
    preset: str = "paper"  # name of the preset this config was built from (recorded, not identity)

    # --- data ---
    data: str = ""  # prepared dataset folder (path: not part of identity)
    data_hash: str = ""  # content key of the prepared dataset (identity)
    image_size: int = 256  # training resolution; resized in memory when the prepared data differ
    classes: str = "lv"  # lv (background vs LV cavity) | multi (background, RV, myocardium, LV)
    size_units: str = (
        "pixels"  # pixels (the paper) | fraction (sizes / (H*W): lambda independent of resolution)
    )

    # --- segmenter (ENet) ---
    seg_arch: str = "enet"
    seg_width: float = 1.0  # channel multiplier (1.0 = the published ENet)
    seg_epochs: int = 100
    seg_lr: float = 5e-4
    seg_betas: tuple[float, float] = (0.9, 0.99)
    seg_weight_decay: float = 0.0
    seg_batch: int = 1  # global labeled batch
    unl_batch: int = 1  # global unlabeled batch
    lr_rule: str = (
        "plateau"  # plateau (paper: halve after lr_patience epochs w/o improvement) | code (authors')
    )
    lr_patience: int = 20
    lr_factor: float = 0.5
    best_metric: str = (
        "dice2d"  # dice2d (authors: per-slice) | dice3d (per volume) drives best epoch & lr rule
    )

    # --- size regressor (ResNeXt) ---
    reg_arch: str = "resnext"
    reg_layers: tuple[int, ...] = (3, 4, 23, 3)  # ResNeXt-101
    reg_groups: int = 32  # cardinality
    reg_width_per_group: int = 4  # base width (32x4d)
    reg_epochs: int = 200
    reg_lr: float = 5e-6
    reg_momentum: float = 0.9
    reg_weight_decay: float = 1e-4
    reg_milestones: tuple[int, ...] = (100, 150)
    reg_lr_factor: float = 0.5
    reg_batch: int = 10  # global batch
    reg_aug_copies: int = 10  # offline augmentation: copies of each labeled slice

    # --- runtime (identity: these change the numbers) ---
    threads: int = 2  # torch intra-op threads (Ray sets its own defaults: we always set this)
    world_size: int = 1  # DDP ranks
    amp: str = "none"  # none | bf16
    channels_last: bool = False
    compile: bool = False

    # --- runtime (not identity) ---
    device: str = "auto"  # auto | cpu | cuda
    stat_window: int = 50  # epochs averaged by the paper statistic (analysis)
    checkpoint_every: int = 1

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from a (possibly partial) dict over the defaults; unknown keys rejected."""
        d = dict(d)
        d.pop("epochs", None)  # derived key written to config.json
        d.pop("run_id", None)
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(cls.field_names())}"
            )
        kwargs = {k: _coerce(k, v, source) for k, v in d.items()}
        cfg = cls(**kwargs)
        cfg.validate(source)
        return cfg

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> RunConfig:
        base = load_preset(name)
        base["preset"] = name
        base.update(overrides)
        return cls.from_dict(base, source=f"preset {name!r}")

    @classmethod
    def from_yaml(cls, path: str | Path, preset: str | None = None) -> RunConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config file ({e.strerror}); check the path") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a text file ({e.reason}); give a YAML file of config keys") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the syntax") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
        preset = data.pop("preset", preset) or "paper"
        base = load_preset(preset)
        base["preset"] = preset
        base.update(data)
        return cls.from_dict(base, source=str(path))

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(include_derived=False), **changes}, source="override")

    def with_overrides(self, items: list[str]) -> RunConfig:
        """Apply ``key=value`` strings (values parsed as YAML scalars/lists)."""
        changes: dict[str, Any] = {}
        for item in items:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set seg_lr=1e-3")
            k, v = item.split("=", 1)
            k = k.strip()
            if k not in self.field_names():
                raise ConfigError(f"--set {k}: unknown key; valid keys: {', '.join(self.field_names())}")
            try:
                changes[k] = yaml.safe_load(v)
            except yaml.YAMLError as e:
                raise ConfigError(f"--set {k}: cannot parse value {v!r}") from e
        return self.replace(**changes)

    # ------------------------------------------------------------------ validation
    def validate(self, source: str = "config") -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"{source}: field {key}={getattr(self, key)!r} {msg}")

        if self.stage not in STAGES:
            raise bad("stage", f"is not one of {', '.join(STAGES)}")
        if self.stage == "segmenter" and self.method not in METHODS:
            raise bad("method", f"is not one of {', '.join(METHODS)}")
        if self.stage == "regressor" and self.method not in ("regressor",) + METHODS:
            raise bad("method", "must be 'regressor' for the regressor stage")
        if self.split_mode not in ("paper", "random"):
            raise bad("split_mode", "is not one of paper, random")
        if self.n_labeled < 1:
            raise bad("n_labeled", "must be >= 1")
        if not 0.0 <= self.gamma < 1.0:
            raise bad("gamma", "must be in [0, 1)")
        if self.lam < 0:
            raise bad("lam", "must be >= 0")
        if self.classes not in ("lv", "multi"):
            raise bad("classes", "is not one of lv, multi")
        if self.size_units not in ("pixels", "fraction"):
            raise bad("size_units", "is not one of pixels, fraction")
        if self.lr_rule not in ("plateau", "code"):
            raise bad("lr_rule", "is not one of plateau, code")
        if self.best_metric not in ("dice2d", "dice3d"):
            raise bad("best_metric", "is not one of dice2d, dice3d")
        if self.amp not in ("none", "bf16"):
            raise bad("amp", "is not one of none, bf16")
        if self.device not in ("auto", "cpu", "cuda"):
            raise bad("device", "is not one of auto, cpu, cuda")
        for key in (
            "image_size",
            "seg_epochs",
            "reg_epochs",
            "seg_batch",
            "unl_batch",
            "reg_batch",
            "threads",
            "world_size",
            "reg_aug_copies",
            "stat_window",
            "checkpoint_every",
        ):
            if getattr(self, key) < 1:
                raise bad(key, "must be >= 1")
        if self.image_size % 8:
            raise bad("image_size", "must be a multiple of 8 (ENet downsamples 3 times)")
        for key in ("seg_batch", "unl_batch", "reg_batch"):
            if getattr(self, key) % self.world_size:
                raise bad(key, f"(global batch) must be divisible by world_size={self.world_size}")
        if self.penalty_warmup < 0:
            raise bad("penalty_warmup", "must be >= 0 (epochs)")
        if self.seg_width <= 0:
            raise bad("seg_width", "must be > 0")

    # ------------------------------------------------------------------ identity
    @property
    def epochs(self) -> int:
        return self.reg_epochs if self.stage == "regressor" else self.seg_epochs

    @property
    def num_classes(self) -> int:
        return 2 if self.classes == "lv" else 4

    def identity(self) -> dict[str, Any]:
        """The fields that change this run's results (canonical: irrelevant fields dropped)."""
        common = [
            "stage",
            "n_labeled",
            "seed",
            "split_mode",
            "split_seed",
            "data_hash",
            "image_size",
            "classes",
            "threads",
            "world_size",
            "amp",
            "channels_last",
            "compile",
        ]
        seg = [f.name for f in fields(self) if f.name.startswith(("seg_", "lr_")) or f.name == "best_metric"]
        reg = [f.name for f in fields(self) if f.name.startswith("reg_")]
        keys = list(common)
        if self.stage == "regressor":
            keys += reg
        else:
            keys += ["method"] + seg
            if self.method != "fs":
                keys += ["unl_batch"]
                if self.penalty_warmup:  # only when set: the run ids of paper-setting runs stay as they were
                    keys += ["penalty_warmup"]
            if self.method in SEG_METHODS_WITH_PENALTY:
                keys += ["gamma", "lam", "size_units"]
            if self.method == "proposed":
                keys += reg
        d = dataclasses.asdict(self)
        return {k: _jsonable(d[k]) for k in sorted(set(keys))}

    def config_hash(self) -> str:
        canon = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        if self.stage == "regressor":
            tag = f"reg-n{self.n_labeled}-s{self.seed}"
        else:
            tag = f"seg-{self.method}-n{self.n_labeled}-s{self.seed}"
            if self.method in SEG_METHODS_WITH_PENALTY:
                tag += f"-g{self.gamma:g}-l{self.lam:g}"
        if self.split_mode == "random":
            tag += f"-r{self.split_seed}"
        return f"{tag}-{self.config_hash()}"

    # ------------------------------------------------------------------ prerequisites
    def regressor_config(self) -> RunConfig:
        """The regressor run whose cached predictions a ``proposed`` run uses."""
        return self.replace(stage="regressor", method="regressor")

    def fs_config(self) -> RunConfig:
        """The FS run whose best checkpoint makes a ``proposals`` run's pseudo-labels."""
        return self.replace(stage="segmenter", method="fs")

    def prerequisites(self) -> list[RunConfig]:
        if self.stage == "segmenter" and self.method == "proposed":
            return [self.regressor_config()]
        if self.stage == "segmenter" and self.method == "proposals":
            return [self.fs_config()]
        return []

    # ------------------------------------------------------------------ serialisation
    def to_dict(self, include_derived: bool = True) -> dict[str, Any]:
        d = {k: _jsonable(v) for k, v in dataclasses.asdict(self).items()}
        if include_derived:
            d["epochs"] = self.epochs
            d["run_id"] = self.run_id
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


_FIELD_TYPES = {f.name: f for f in fields(RunConfig)}


def _coerce(key: str, value: Any, source: str) -> Any:
    """Coerce a YAML/JSON/Ray value to the field's type, or raise a one-line ConfigError."""
    f = _FIELD_TYPES[key]
    default = f.default if f.default is not dataclasses.MISSING else None
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if isinstance(default, str):
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError
            return str(value)
        if isinstance(default, tuple):
            if not isinstance(value, list | tuple):
                raise ValueError
            elem = type(default[0]) if default else float
            return tuple(elem(x) for x in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: field {key}={value!r} has the wrong type; expected {type(default).__name__}"
            f" like {default!r}"
        ) from None
    return value


def load_preset(name: str) -> dict[str, Any]:
    """A preset is data: ``suite/presets/<name>.yaml`` (keys over the paper defaults)."""
    avail = available_presets()
    if name not in avail:
        raise ConfigError(f"preset {name!r} does not exist; available presets: {', '.join(avail)}")
    text = resources.files("suite.presets").joinpath(f"{name}.yaml").read_text()
    data = yaml.safe_load(text) or {}
    data.pop("description", None)
    return data


def preset_description(name: str) -> str:
    text = resources.files("suite.presets").joinpath(f"{name}.yaml").read_text()
    return str((yaml.safe_load(text) or {}).get("description", "")).strip()


def available_presets() -> list[str]:
    root = resources.files("suite.presets")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


__all__ = [
    "RunConfig",
    "load_preset",
    "available_presets",
    "preset_description",
    "STAGES",
    "METHODS",
    "PRESETS",
    "field",
]
