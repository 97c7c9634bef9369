"""The rules between a run config's fields (each field's own domain is checked where the field is declared,
:mod:`suite.config`): what one field's value asks of another's, each broken rule one ConfigError naming the
field to change and how."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from suite.errors import ConfigError
from suite.run_kinds import METHODS

if TYPE_CHECKING:  # annotations only: suite.config calls check_rules
    from suite.config import RunConfig

# the largest log-barrier t a run may reach (RunConfig.barrier_t): float32 keeps the switch point -1/t² and
# log(1/t²) finite up to here; the authors reach 1.1^199 ≈ 1.7e8 in 200 epochs
BARRIER_T_MAX = 1e12


def check_rules(cfg: RunConfig, source: str = "config") -> None:
    """Raise a one-line ConfigError for the first rule between fields that ``cfg`` breaks. A rule binds only
    where every field it reads acts on the run (:meth:`RunConfig.acts_on`): the authors' ResNeXt refuses
    64 px for a regressor or Proposed run, never for FS or the Oracle, which build no regressor; so dropping
    a ``--set`` that has no effect, as ``suite run`` advises, never brings a refusal back."""

    def bad(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{source}: field {key}={getattr(cfg, key)!r} {msg}")

    def acts(*keys: str) -> bool:
        return all(cfg.acts_on(k) for k in keys)

    if cfg.stage == "segmenter" and cfg.method not in METHODS:
        raise bad("method", f"is not one of {', '.join(METHODS)} (the segmenter's methods)")
    if cfg.stage == "regressor" and cfg.ssl != "none":
        raise bad("ssl", "applies to segmenter runs only (the regressor has no unlabeled term); drop it")
    for key in ("seg_batch", "unl_batch", "reg_batch"):
        if acts(key) and getattr(cfg, key) % cfg.world_size:
            raise bad(key, f"(global batch) must be divisible by world_size={cfg.world_size}")
    if acts("classes", "seg_out_channels") and cfg.classes == "multi" and cfg.seg_out_channels != 4:
        raise bad("seg_out_channels", "cannot hold classes=multi (4 classes); set seg_out_channels=4")
    if acts("constrained", "seg_out_channels") and cfg.constrained == "all" and cfg.seg_out_channels != 4:
        raise bad("constrained", "needs seg_out_channels=4 (a channel per ACDC class); set it")
    if acts("barrier_t", "barrier_growth", "seg_epochs"):  # scheme=logbarrier on a penalty method
        # log10 of t at the last epoch (in logs: barrier_growth ** epochs overflows a float first)
        last = math.log10(cfg.barrier_t) + max(cfg.seg_epochs - 1, 0) * math.log10(cfg.barrier_growth)
        if last > math.log10(BARRIER_T_MAX):
            raise bad(
                "barrier_growth",
                f"takes t = barrier_t · barrier_growth^epoch to 10^{last:.0f} by epoch "
                f"{cfg.seg_epochs} (at most {BARRIER_T_MAX:g}: beyond it the log-barrier's switch point "
                "underflows); lower barrier_growth or barrier_t, or train fewer epochs",
            )
    if acts("reg_arch", "constraint") and cfg.reg_arch == "resnext-authors" and cfg.constraint != "size":
        raise bad("reg_arch", "predicts sizes only (one output per label); use reg_arch=resnext")
    if acts("seg_arch", "seg_width") and cfg.seg_arch == "enet-authors" and cfg.seg_width != 1.0:
        raise bad("seg_width", "must be 1.0 with seg_arch=enet-authors (the authors' widths are fixed)")
    if acts("reg_arch", "image_size") and cfg.reg_arch == "resnext-authors":
        # five stride-2 steps make a ceil(S/32) map; AvgPool2d(7) must see 7..13 pixels for one output
        side = -(-cfg.image_size // 32)
        if not 7 <= side <= 13:
            run = cfg.method if cfg.stage == "segmenter" else "regressor"
            raise bad(
                "image_size",
                f"does not fit reg_arch=resnext-authors, the regressor this {run} run trains or reads "
                "(its AvgPool2d(7) needs image_size 200 to 416, e.g. 256); use reg_arch=resnext at this "
                "size",
            )
