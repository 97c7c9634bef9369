"""One frozen run config per run, built from a named preset (YAML data), a YAML file, ``--set`` overrides
or a Ray trial dict. Unknown keys are rejected with the valid ones listed.

A run's identity (``run_id``) is a readable tag plus a short hash of the canonical JSON of the fields
that change its results *for its stage and method* (paths, device and analysis-only fields excluded), so
that e.g. one regressor of (n, split, seed) is shared by every gamma, lambda and method that needs it.
Each field declares its identity scope in its metadata (``_f(default, scope)``); ``identity_keys()`` is
computed from those declarations and written to ``config.json`` as ``identity_keys``, so readers of run
directories need not re-derive it.
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
DERIVED_KEYS = ("epochs", "run_id", "identity_keys")  # keys ``to_dict`` adds to the fields
SEG_ARCHS = ("enet", "enet-authors")
REG_ARCHS = ("resnext", "resnext-authors")
SEG_OUT_CHANNELS = (2, 4)

# Identity scopes: which runs a field changes. ``identity()`` takes the fields whose scope applies to the run
# (``identity_scopes``); a field without a scope (paths, device, analysis-only) never enters a run id.
ALL = "all"  # every run
SEG = "segmenter"  # every segmenter run
UNLABELED = "unlabeled"  # segmenter runs that use the unlabeled images (proposals, proposed, oracle)
PENALTY = "penalty"  # segmenter runs with the size penalty (proposed, oracle)
REG = "regressor"  # the regressor run and the proposed runs that read its predictions


def _f(default: Any, scope: str | None = None, *, when_set: bool = False) -> Any:
    """A config field with its identity scope; ``when_set``: part of the identity only when it differs from
    its default (fields added later: the runs that leave them at the default keep their run ids)."""
    return field(default=default, metadata={"identity": scope, "when_set": when_set})


@dataclass(frozen=True)
class RunConfig:
    # --- what is run (experiment axes) ---
    stage: str = _f("segmenter", ALL)  # regressor | segmenter
    method: str = _f("fs", SEG)  # fs | proposals | proposed | oracle ("regressor" for the regressor stage)
    n_labeled: int = _f(5, ALL)  # paper-scale count; the effective count for the cohort is in splits.json
    seed: int = _f(0, ALL)  # training seed (init, data order, augmentation)
    split_mode: str = _f("paper", ALL)  # paper | random
    split_seed: int = _f(1, ALL)  # paper mode: the authors' random.seed(1); random mode: the labeled draw
    gamma: float = _f(0.1, PENALTY)  # bound tightness: [(1-gamma) R, (1+gamma) R]
    lam: float = _f(1e-2, PENALTY)  # penalty weight lambda
    # first epochs without the unlabeled term (train as FS first); 0 = the paper
    penalty_warmup: int = _f(0, UNLABELED, when_set=True)
    preset: str = _f("paper")  # name of the preset this config was built from (recorded, not identity)

    # --- data ---
    data: str = _f("")  # prepared dataset folder (a path: not identity)
    data_hash: str = _f("", ALL)  # content key of the prepared dataset
    image_size: int = _f(256, ALL)  # training resolution; resized in memory when the prepared data differ
    # which classes are supervised: lv (background vs LV cavity) | multi (background, RV, myocardium, LV)
    classes: str = _f("lv", ALL)
    # pixels (the paper) | fraction (sizes / (H*W): lambda independent of resolution)
    size_units: str = _f("pixels", PENALTY)

    # --- segmenter (ENet) ---
    # enet (Paszke et al.'s ENet, suite/models/enet.py) | enet-authors (the authors' variant, their init)
    seg_arch: str = _f("enet", SEG)
    # network output channels, apart from which classes are supervised: 2 (background, LV) or 4 (channel =
    # ACDC label: background 0, RV 1, myocardium 2, LV 3; the authors' head; classes=multi needs it)
    seg_out_channels: int = _f(2, SEG, when_set=True)
    seg_width: float = _f(1.0, SEG)  # channel multiplier (1.0 = the published ENet; enet-authors: 1.0 only)
    seg_epochs: int = _f(100, SEG)
    seg_lr: float = _f(5e-4, SEG)
    seg_betas: tuple[float, float] = _f((0.9, 0.99), SEG)
    seg_weight_decay: float = _f(0.0, SEG)
    seg_batch: int = _f(1, SEG)  # global labeled batch
    unl_batch: int = _f(1, UNLABELED)  # global unlabeled batch
    # plateau (paper: halve after lr_patience epochs w/o improvement) | code (the authors')
    lr_rule: str = _f("plateau", SEG)
    lr_patience: int = _f(20, SEG)
    lr_factor: float = _f(0.5, SEG)
    # dice2d (authors: per-slice) | dice3d (per volume): drives the best epoch and the lr rule
    best_metric: str = _f("dice2d", SEG)

    # --- size regressor (ResNeXt) ---
    # resnext (torchvision's ResNeXt: global average pooling, one output) | resnext-authors (their ResNeXt:
    # dropout 0.5 on every residual branch, AvgPool2d(7), 4 outputs of which index 3 is the LV size)
    reg_arch: str = _f("resnext", REG)
    reg_layers: tuple[int, ...] = _f((3, 4, 23, 3), REG)  # ResNeXt-101
    reg_groups: int = _f(32, REG)  # cardinality
    reg_width_per_group: int = _f(4, REG)  # base width (32x4d)
    reg_epochs: int = _f(200, REG)
    reg_lr: float = _f(5e-6, REG)
    reg_momentum: float = _f(0.9, REG)
    reg_weight_decay: float = _f(1e-4, REG)
    reg_milestones: tuple[int, ...] = _f((100, 150), REG)  # lr x reg_lr_factor from these epochs on
    reg_lr_factor: float = _f(0.5, REG)
    reg_batch: int = _f(10, REG)  # global batch
    # squared error over the batch: mean (per sample) | sum (the authors' MSELoss(reduction="sum"); under DDP
    # the sum over the global batch)
    reg_loss_reduction: str = _f("mean", REG, when_set=True)
    # offline augmentation: samples per labeled slice, the original included (copy 0): 10 = the original and
    # 9 transformed copies ("10 times larger", the paper); the authors' --n_aug 10 is 11 (original + 10)
    reg_aug_copies: int = _f(10, REG)
    # image resampling of the rotated copies: bilinear | nearest (the authors: PIL's default, nearest);
    # labels are always nearest
    reg_aug_interp: str = _f("bilinear", REG, when_set=True)

    # --- runtime (identity: these change the numbers) ---
    threads: int = _f(2, ALL)  # torch intra-op threads (Ray sets its own defaults: we always set this)
    world_size: int = _f(1, ALL)  # DDP ranks
    amp: str = _f("none", ALL)  # none | bf16
    channels_last: bool = _f(False, ALL)
    compile: bool = _f(False, ALL)

    # --- runtime (not identity) ---
    device: str = _f("auto")  # auto | cpu | cuda
    stat_window: int = _f(50)  # epochs averaged by the paper statistic (analysis)
    checkpoint_every: int = _f(1)

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from a (possibly partial) dict over the defaults; unknown keys rejected."""
        d = dict(d)
        for derived in DERIVED_KEYS:  # written to config.json, recomputed here
            d.pop(derived, None)
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
        self._validate_architecture(bad)

    def _validate_architecture(self, bad: Any) -> None:
        if self.seg_arch not in SEG_ARCHS:
            raise bad("seg_arch", f"is not one of {', '.join(SEG_ARCHS)}")
        if self.reg_arch not in REG_ARCHS:
            raise bad("reg_arch", f"is not one of {', '.join(REG_ARCHS)}")
        if self.seg_out_channels not in SEG_OUT_CHANNELS:
            raise bad("seg_out_channels", "is not one of 2, 4")
        if self.classes == "multi" and self.seg_out_channels != 4:
            raise bad("seg_out_channels", "cannot hold classes=multi (4 classes); set seg_out_channels=4")
        if self.reg_loss_reduction not in ("mean", "sum"):
            raise bad("reg_loss_reduction", "is not one of mean, sum")
        if self.reg_aug_interp not in ("bilinear", "nearest"):
            raise bad("reg_aug_interp", "is not one of bilinear, nearest")
        if self.seg_arch == "enet-authors" and self.seg_width != 1.0:
            raise bad("seg_width", "must be 1.0 with seg_arch=enet-authors (the authors' widths are fixed)")
        if self.reg_arch == "resnext-authors":
            # five stride-2 steps make a ceil(S/32) map; AvgPool2d(7) must see 7..13 pixels for one output
            side = -(-self.image_size // 32)
            if not 7 <= side <= 13:
                raise bad(
                    "image_size",
                    "does not fit reg_arch=resnext-authors (its AvgPool2d(7) needs image_size 200 to 416, "
                    "e.g. 256); use reg_arch=resnext at this size",
                )

    # ------------------------------------------------------------------ identity
    @property
    def epochs(self) -> int:
        return self.reg_epochs if self.stage == "regressor" else self.seg_epochs

    def identity_scopes(self) -> set[str]:
        """The identity scopes that apply to this run (see ``ALL`` … ``REG``)."""
        if self.stage == "regressor":
            return {ALL, REG}
        scopes = {ALL, SEG}
        if self.method != "fs":
            scopes.add(UNLABELED)
        if self.method in SEG_METHODS_WITH_PENALTY:
            scopes.add(PENALTY)
        if self.method == "proposed":
            scopes.add(REG)
        return scopes

    def identity_keys(self) -> list[str]:
        """Sorted names of the fields that change this run's results (its identity), from their scopes."""
        scopes = self.identity_scopes()
        keys = []
        for f in fields(self):
            if f.metadata.get("identity") not in scopes:
                continue
            if f.metadata.get("when_set") and getattr(self, f.name) == f.default:
                continue
            keys.append(f.name)
        return sorted(keys)

    def identity(self) -> dict[str, Any]:
        """The fields that change this run's results (canonical: irrelevant fields dropped)."""
        return {k: _jsonable(getattr(self, k)) for k in self.identity_keys()}

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
            d["identity_keys"] = self.identity_keys()
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
    "SEG_ARCHS",
    "REG_ARCHS",
    "field",
]
