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
import difflib
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from suite.config_rules import BARRIER_T_MAX, check_rules
from suite.data.splits import MODES as SPLIT_MODES
from suite.data.splits import PAPER_N_TRAIN
from suite.domains import Domain, Flag, Int, ListOf, Number, OneOf, Text, coerce_scalar
from suite.errors import ConfigError
from suite.presets import available_presets, load_preset, preset_description
from suite.run_kinds import (
    ALL,
    CONSTRAINED,
    METHODS,
    PENALTY,
    REG,
    SEG,
    SEG_METHODS_WITH_PENALTY,
    SSL_ACTIVE,
    SSL_TERMS,
    STAGES,
    UNLABELED,
    identity_scopes_of,
)
from suite.yaml_input import load_yaml, read_yaml

PRESETS = ("paper", "code", "smoke", "fidelity", "repro")
# keys ``to_dict`` adds to the fields (config.json): never input, each with the fields to set instead
DERIVED_KEYS = {
    "epochs": "set seg_epochs (the segmenter's) or reg_epochs (the regressor's) instead",
    "run_id": "it is computed from the fields that make up the run's identity; remove the key",
    "identity_keys": "it is computed from the fields' declarations; remove the key",
}
SEG_ARCHS = ("enet", "enet-authors")
REG_ARCHS = ("resnext", "resnext-authors")
SEG_OUT_CHANNELS = (2, 4)


def _f(
    default: Any,
    scope: str | None,
    domain: Domain,
    *,
    when_set: bool = False,
    active_when: tuple[str, str | tuple[str, ...]] | None = None,
) -> Any:
    """A config field with its identity scope and its domain (the values it accepts); ``when_set``: part of
    the identity only when it differs from its default (fields added later: the runs that leave them at the
    default keep their run ids); ``active_when=(field, value)``: the field acts only when that other field
    has that value, or one of them when ``value`` is a tuple (the log-barrier's t under
    ``scheme=logbarrier``), so elsewhere it is no part of the identity: the same work is never trained twice
    under two run ids."""
    meta = {"identity": scope, "when_set": when_set, "domain": domain, "active_when": active_when}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    # Each field: _f(default, identity scope, domain); the domain (suite.domains) is checked by from_dict.
    # --- what is run (experiment axes) ---
    stage: str = _f("segmenter", ALL, OneOf(STAGES))  # regressor | segmenter
    # fs | proposals | proposed | oracle ("regressor" for the regressor stage)
    method: str = _f("fs", SEG, OneOf(("regressor", *METHODS)))
    # paper-scale count of the paper's 75 training patients; the effective count for the cohort is in
    # splits.json
    n_labeled: int = _f(5, ALL, Int(1, PAPER_N_TRAIN))
    seed: int = _f(0, ALL, Int(0))  # training seed (init, data order, augmentation)
    split_mode: str = _f("paper", ALL, OneOf(SPLIT_MODES))  # paper | random
    # paper mode: the authors' random.seed(1); random mode: the labeled draw
    split_seed: int = _f(1, ALL, Int(0))
    gamma: float = _f(0.1, PENALTY, Number(0, 1, open_hi=True))  # bound tightness: [(1-gamma) R, (1+gamma) R]
    lam: float = _f(1e-2, PENALTY, Number(0))  # penalty weight lambda
    # first epochs without the unlabeled term (train as FS first); 0 = the paper
    penalty_warmup: int = _f(0, UNLABELED, Int(0), when_set=True)
    # lambda ramped up from ~0 over the first lam_rampup epochs: lambda * exp(-5 (1 - e / lam_rampup)^2) at
    # epoch e (suite.ramps, the sigmoid ramp of semi-supervised training), constant within an epoch; counted
    # from epoch 0, warm-up epochs included; 0 = the paper (lambda from the first step)
    lam_rampup: int = _f(0, PENALTY, Int(0), when_set=True)
    # --- how the unlabeled term enters the optimiser ---
    # alternating (the authors' code: all labeled CE steps, then all unlabeled-term steps) | joint (the
    # paper's objective: each step on CE of one labeled batch + lambda * C of one unlabeled batch, summed)
    update: str = _f("alternating", UNLABELED, OneOf(("alternating", "joint")), when_set=True)
    # name of the preset this config was built from (recorded, not identity)
    preset: str = _f("paper", None, OneOf(PRESETS))

    # --- data ---
    data: str = _f("", None, Text("a prepared dataset folder"))  # a path: not identity
    # content key of the prepared dataset (filled in from the data when empty)
    data_hash: str = _f("", ALL, Text("letters and digits (the prepared data's data_hash)", "[0-9A-Za-z]*"))
    # training resolution; resized in memory when the prepared data differ. ENet downsamples 3 times (a
    # multiple of 8); at 8 its smallest map is 1x1, which batch norm cannot train on with a batch of 1
    image_size: int = _f(256, ALL, Int(16, 1024, step=8))
    # which classes are supervised: lv (background vs LV cavity) | multi (background, RV, myocardium, LV)
    classes: str = _f("lv", ALL, OneOf(("lv", "multi")))
    # pixels (the paper) | fraction (sizes / (H*W): lambda independent of resolution)
    size_units: str = _f("pixels", PENALTY, OneOf(("pixels", "fraction")))

    # --- segmenter (ENet) ---
    # enet (Paszke et al.'s ENet, suite/models/enet.py) | enet-authors (the authors' variant, their init)
    seg_arch: str = _f("enet", SEG, OneOf(SEG_ARCHS))
    # network output channels, apart from which classes are supervised: 2 (background, LV) or 4 (channel =
    # ACDC label: background 0, RV 1, myocardium 2, LV 3; the authors' head; classes=multi needs it)
    seg_out_channels: int = _f(2, SEG, OneOf(SEG_OUT_CHANNELS), when_set=True)
    # channel multiplier (1.0 = the published ENet; enet-authors: 1.0 only); below 1/16 the stages round to
    # fewer channels than the one before and the network cannot be built
    seg_width: float = _f(1.0, SEG, Number(1 / 16, 8))
    seg_epochs: int = _f(100, SEG, Int(1))
    seg_lr: float = _f(5e-4, SEG, Number(0, open_lo=True))
    seg_betas: tuple[float, float] = _f(
        (0.9, 0.99), SEG, ListOf(Number(0, 1, open_hi=True), 2, "Adam's beta1, beta2")
    )
    seg_weight_decay: float = _f(0.0, SEG, Number(0))
    seg_batch: int = _f(1, SEG, Int(1))  # global labeled batch
    unl_batch: int = _f(1, UNLABELED, Int(1))  # global unlabeled batch
    # plateau (paper: halve after lr_patience epochs w/o improvement) | code (the authors')
    lr_rule: str = _f("plateau", SEG, OneOf(("plateau", "code")))
    lr_patience: int = _f(20, SEG, Int(1))  # epochs (the code rule divides by best_epoch + lr_patience)
    lr_factor: float = _f(0.5, SEG, Number(0, 1, open_lo=True, open_hi=True))  # the lr rule's multiplier
    # dice2d (authors: per-slice) | dice3d (per volume): drives the best epoch and the lr rule
    best_metric: str = _f("dice2d", SEG, OneOf(("dice2d", "dice3d")))

    # --- size regressor (ResNeXt) ---
    # resnext (torchvision's ResNeXt: global average pooling, one output) | resnext-authors (their ResNeXt:
    # dropout 0.5 on every residual branch, AvgPool2d(7), 4 outputs of which index 3 is the LV size)
    reg_arch: str = _f("resnext", REG, OneOf(REG_ARCHS))
    # blocks in each of the 4 stages: ResNeXt-101
    reg_layers: tuple[int, ...] = _f((3, 4, 23, 3), REG, ListOf(Int(1), 4, "blocks per stage"))
    reg_groups: int = _f(32, REG, Int(1))  # cardinality
    reg_width_per_group: int = _f(4, REG, Int(1))  # base width (32x4d)
    reg_epochs: int = _f(200, REG, Int(1))
    reg_lr: float = _f(5e-6, REG, Number(0, open_lo=True))
    reg_momentum: float = _f(0.9, REG, Number(0, 1, open_hi=True))
    reg_weight_decay: float = _f(1e-4, REG, Number(0))
    # lr x reg_lr_factor from each of these epochs on (milestones past reg_epochs never apply)
    reg_milestones: tuple[int, ...] = _f((100, 150), REG, ListOf(Int(1), None, "epochs", increasing=True))
    reg_lr_factor: float = _f(0.5, REG, Number(0, 1, open_lo=True))  # 1: a constant lr
    reg_batch: int = _f(10, REG, Int(1))  # global batch
    # squared error over the batch: mean (per sample) | sum (the authors' MSELoss(reduction="sum"); under DDP
    # the sum over the global batch)
    reg_loss_reduction: str = _f("mean", REG, OneOf(("mean", "sum")), when_set=True)
    # offline augmentation: samples per labeled slice, the original included (copy 0): 10 = the original and
    # 9 transformed copies ("10 times larger", the paper); the authors' --n_aug 10 is 11 (original + 10)
    reg_aug_copies: int = _f(10, REG, Int(1))
    # image resampling of the rotated copies: bilinear | nearest (the authors: PIL's default, nearest);
    # labels are always nearest
    reg_aug_interp: str = _f("bilinear", REG, OneOf(("bilinear", "nearest")), when_set=True)

    # --- the constraint family (suite/constraints.py); defaults = the paper: LV size, quadratic penalty ---
    # which classes are constrained (apart from which are supervised, `classes`, and the output channels):
    # lv (the LV cavity, ACDC label 3) | all (RV, myocardium, LV: labels 1, 2, 3; needs seg_out_channels=4)
    constrained: str = _f("lv", CONSTRAINED, OneOf(("lv", "all")), when_set=True)
    # which attributes: size | size+centroid (the soft centroid, 2 coordinates per class)
    constraint: str = _f("size", CONSTRAINED, OneOf(("size", "size+centroid")), when_set=True)
    # penalty (quadratic, paper eqs. 4-5) | logbarrier (the log-barrier extension psi_t)
    scheme: str = _f("penalty", PENALTY, OneOf(("penalty", "logbarrier")), when_set=True)
    # centroid bounds c +- centroid_tol, c in [0, 1] image coordinates: 20 px at 256 = 0.078125 (HKervadec/
    # shape_descriptors acdc.make: soft_centroid 'margin': 20, 'mode': 'abs', on the 256x256 slices of its
    # preprocess/slice_acdc.py --shape)
    centroid_tol: float = _f(
        0.078125, PENALTY, Number(0, 1), when_set=True, active_when=("constraint", "size+centroid")
    )
    # log-barrier t at epoch e: barrier_t * barrier_growth**e (shape_descriptors acdc.make: LogBarrierLoss
    # 't': 1 with scheduler MultiplyT 'mu': 1.1 per epoch; LIVIAETS/extended_logbarrier toy.make the same)
    # t starts in [1e-6, 1e6] and may not pass BARRIER_T_MAX by the last epoch (validate): float32 keeps the
    # switch point -1/t² and log(1/t²) finite there; the authors reach 1.1^199 ≈ 1.7e8 in 200 epochs
    barrier_t: float = _f(
        1.0, PENALTY, Number(1e-6, 1e6), when_set=True, active_when=("scheme", "logbarrier")
    )
    barrier_growth: float = _f(
        1.1, PENALTY, Number(1, 10), when_set=True, active_when=("scheme", "logbarrier")
    )

    # --- a semi-supervised term on the unlabeled slices, with any method (docs/ssl.md: sources, defaults) ---
    # none | mean_teacher (EMA teacher, input noise) | entropy_min | cps (cross pseudo supervision)
    ssl: str = _f("none", SEG, OneOf(SSL_TERMS), when_set=True)
    ssl_weight: float = _f(0.1, SEG, Number(0, open_lo=True), active_when=SSL_ACTIVE)  # w after the ramp-up
    # sigmoid ramp-up of w over this fraction of seg_epochs (SSL4MIS: its whole run); 0 = none
    ssl_rampup: float = _f(1.0, SEG, Number(0, 1), active_when=SSL_ACTIVE)
    ssl_ema_decay: float = _f(0.99, SEG, Number(0, 1, open_hi=True), active_when=("ssl", "mean_teacher"))
    # sd of the Gaussian noise on the teacher's input (clamped at 2 sd)
    ssl_noise: float = _f(0.1, SEG, Number(0, 1), active_when=("ssl", "mean_teacher"))

    # --- runtime (identity: these change the numbers) ---
    # torch intra-op threads (Ray sets its own defaults: we always set this)
    threads: int = _f(2, ALL, Int(1))
    world_size: int = _f(1, ALL, Int(1))  # DDP ranks
    amp: str = _f("none", ALL, OneOf(("none", "bf16")))
    channels_last: bool = _f(False, ALL, Flag())
    compile: bool = _f(False, ALL, Flag())
    # how the optimisers (Adam, SGD) update the parameters: foreach (one multi-tensor kernel per update
    # term: bit for bit the per-parameter loop of torch's CPU default and of the authors' code, and 1.6x
    # faster on the authors' ENet's 459 tensors: 18.7 -> 11.7 ms an update at 1 thread) | fused (one kernel
    # for the whole update: 2.3 ms, but not bit for bit, so it changes the numbers and enters the run id)
    optim_impl: str = _f("foreach", ALL, OneOf(("foreach", "fused")), when_set=True)

    # --- runtime (not identity) ---
    device: str = _f("auto", None, OneOf(("auto", "cpu", "cuda")))
    stat_window: int = _f(50, None, Int(1))  # epochs averaged by the paper statistic (analysis)
    checkpoint_every: int = _f(1, None, Int(1))  # epochs between checkpoint_last.pt writes

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def domain(cls, name: str) -> Domain:
        """The values field ``name`` accepts (declared with the field)."""
        return _FIELDS[name].metadata["domain"]

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from a (possibly partial) dict over the defaults: the one path every config takes (presets,
        YAML files, ``--set``, Ray trial dicts, SLURM tasks). Every key takes effect or is rejected: unknown
        and derived keys, values of the wrong type or outside the field's domain, and broken cross-field
        rules each raise a one-line ConfigError naming the field."""
        for key in d:
            if key in DERIVED_KEYS:
                raise ConfigError(f"{source}: key {key} is derived, not an input; {DERIVED_KEYS[key]}")
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            close = [m for k in unknown for m in difflib.get_close_matches(k, cls.field_names(), n=1)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}{hint}; "
                f"valid keys: {', '.join(cls.field_names())}"
            )
        kwargs = {k: _coerce(k, v, source) for k, v in d.items()}
        for key, value in kwargs.items():
            problem = cls.domain(key).problem(value)
            if problem:
                raise ConfigError(f"{source}: field {key}={_jsonable(value)!r} {problem}")
        cfg = cls(**kwargs)
        cfg.validate(source)
        return cfg

    @classmethod
    def from_config_json(cls, d: dict[str, Any], *, source: str) -> RunConfig:
        """A run's ``config.json`` as the suite wrote it (``to_json``): its derived keys are dropped (they are
        recomputed), every other key goes through :meth:`from_dict`."""
        return cls.from_dict({k: v for k, v in d.items() if k not in DERIVED_KEYS}, source=source)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> RunConfig:
        base = load_preset(name)
        base["preset"] = name
        base.update(overrides)
        return cls.from_dict(base, source=f"preset {name!r}")

    @classmethod
    def from_yaml(cls, path: str | Path, preset: str | None = None) -> RunConfig:
        path = Path(path)
        data = read_yaml(path, "config file") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
        preset = data.pop("preset", preset) or "paper"
        base = load_preset(str(preset))
        base["preset"] = preset
        base.update(data)
        return cls.from_dict(base, source=str(path))

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(include_derived=False), **changes}, source="override")

    def with_overrides(self, items: list[str]) -> RunConfig:
        """Apply ``key=value`` strings (values parsed as YAML scalars/lists), checked as any other input."""
        changes: dict[str, Any] = {}
        for item in items:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set seg_lr=1e-3")
            k, v = item.split("=", 1)
            k = k.strip()
            changes[k] = load_yaml(v, f"--set {k}={v}")
        return RunConfig.from_dict({**self.to_dict(include_derived=False), **changes}, source="--set")

    # ------------------------------------------------------------------ validation
    def validate(self, source: str = "config") -> None:
        """The rules between fields (:func:`suite.config_rules.check_rules`); each field's own domain is
        checked by :meth:`from_dict`."""
        check_rules(self, source)

    # ------------------------------------------------------------------ identity
    @property
    def epochs(self) -> int:
        return self.reg_epochs if self.stage == "regressor" else self.seg_epochs

    def identity_scopes(self) -> set[str]:
        """The identity scopes that apply to this run (see ``ALL`` … ``REG``)."""
        return identity_scopes_of(self.stage, self.method, self.ssl)

    def acts_on(self, name: str) -> bool:
        """Whether field ``name`` can change this run's results: its scope applies to the stage and method
        (λ does not to FS) and, for an ``active_when`` field, its condition holds. Runtime fields (no scope:
        paths, the device) always act."""
        meta = _FIELDS[name].metadata
        if meta.get("identity") is None:
            return True
        if meta.get("identity") not in self.identity_scopes():
            return False
        active = meta.get("active_when")
        if active is None:
            return True
        value = getattr(self, active[0])
        return value in active[1] if isinstance(active[1], tuple) else value == active[1]

    def identity_keys(self) -> list[str]:
        """Sorted names of the fields that change this run's results (its identity), from their scopes."""
        keys = []
        for f in fields(self):
            if f.metadata.get("identity") is None or not self.acts_on(f.name):
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
            if self.ssl != "none":
                tag += f"-{self.ssl}"
        if self.split_mode == "random":
            tag += f"-r{self.split_seed}"
        return f"{tag}-{self.config_hash()}"

    # ------------------------------------------------------------------ prerequisites
    def regressor_config(self) -> RunConfig:
        """The regressor run whose cached predictions a ``proposed`` run uses (with or without an ``ssl``
        term: one regressor serves both)."""
        return self.replace(stage="regressor", method="regressor", ssl="none")

    def fs_config(self) -> RunConfig:
        """The FS run whose best checkpoint makes a ``proposals`` run's pseudo-labels: plain FS, the
        pseudo-labels of the paper's method, whatever ``ssl`` term the proposals run adds."""
        return self.replace(stage="segmenter", method="fs", ssl="none")

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


def when_set_fields_in_scope(stage: str, method: str, ssl: str = "none") -> frozenset[str]:
    """The ``when_set`` fields that change a run of ``stage``/``method``/``ssl`` even at their default: left
    out of its run id only to keep old ids, so a reader comparing runs must not treat them as irrelevant."""
    scopes = identity_scopes_of(stage, method, ssl)
    return frozenset(
        f.name
        for f in fields(RunConfig)
        if f.metadata.get("when_set") and f.metadata.get("identity") in scopes
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


_FIELDS = {f.name: f for f in fields(RunConfig)}


def _coerce(key: str, value: Any, source: str) -> Any:
    """Coerce a YAML/JSON/Ray value to the field's type, or raise a one-line ConfigError."""
    default = _FIELDS[key].default
    try:
        if isinstance(default, tuple):  # a list of the default's element type
            if not isinstance(value, list | tuple):
                raise ValueError
            return tuple(coerce_scalar(default[0], x) for x in value)
        return coerce_scalar(default, value)
    except (TypeError, ValueError):
        kind = (
            f"a list of {type(default[0]).__name__}" if isinstance(default, tuple) else type(default).__name__
        )
        raise ConfigError(
            f"{source}: field {key}={value!r} has the wrong type; expected {kind} like {_jsonable(default)!r}"
        ) from None


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
    "SSL_TERMS",
    "SEG_METHODS_WITH_PENALTY",
    "BARRIER_T_MAX",
    "identity_scopes_of",
    "field",
]
