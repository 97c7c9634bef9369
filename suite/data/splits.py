"""Patient splits: the authors' paper split and a seeded random mode, scaled to cohorts of N != 100.

Paper mode (what LIVIAETS/semi_curriculum does; ``preprocess/slice_acdc.py`` and ``learn_size.make``)::

    random.seed(seed)                                  # seed = 1 in the authors' Makefile
    validation = random.sample(sorted_ids, 25)
    val_seg = sorted(validation)[:20]                  # "val_20": the first 20 in sorted order
    val_reg = sorted(validation)[20:]                  # "val_r_20": the last 5
    train = sorted(set(ids) - set(validation))         # 75 patients
    labeled(n) = train[:n]                             # "train_b_n": first n in sorted ID order (nested)
    unlabeled(n) = train[n:]                           # "train_r_n"

Random mode keeps the paper's validation patients and draws the labeled patients from a permutation of the
training patients seeded by the split seed; labeled(n) is a prefix of that permutation, so the subsets stay
nested (n=5 inside n=10, ...).

A cohort of N != 100 patients (N >= 30) scales every count by N/100 with round-half-up: validation
round(N/4), regressor validation max(1, round(5N/100)), labeled n -> max(1, round(n N/100)) (n = 75 means
"all training patients"). A labeled count that leaves no unlabeled patient (other than n = 75) is dropped
with a warning. The effective counts are recorded in ``splits.json``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from suite.errors import InputError
from suite.seeding import derive_seed

log = logging.getLogger("suite.data.splits")

PAPER_N_PATIENTS = 100
PAPER_N_VAL = 25
PAPER_N_VAL_REG = 5
PAPER_N_TRAIN = 75
PAPER_LABELED = (5, 10, 20, 30, 40, 75)
PAPER_SEED = 1
MIN_PATIENTS = 30
MODES = ("paper", "random")


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` rounds halves to even)."""
    return int(math.floor(x + 0.5))


@dataclass(frozen=True)
class Split:
    """One labeled/unlabeled/validation assignment of patient IDs (each list sorted)."""

    labeled: list[str]
    unlabeled: list[str]
    val_seg: list[str]
    val_reg: list[str]
    n_effective: int  # the number of labeled patients in this cohort (n scaled by N/100)
    n_labeled: int = 0  # the paper-scale n that was asked for
    mode: str = "paper"
    split_seed: int = PAPER_SEED

    @property
    def train(self) -> list[str]:
        return sorted(self.labeled + self.unlabeled)


@dataclass(frozen=True)
class Counts:
    """The effective counts for a cohort of ``n_patients``."""

    n_patients: int
    n_val: int
    n_val_seg: int
    n_val_reg: int
    n_train: int
    labeled: dict[int, int] = field(default_factory=dict)  # paper n -> effective n (kept ones only)
    dropped: dict[int, int] = field(default_factory=dict)  # paper n -> effective n that did not fit

    @property
    def scale(self) -> float:
        return self.n_patients / PAPER_N_PATIENTS


def counts(n_patients: int, labeled: Sequence[int] = PAPER_LABELED, warn: bool = True) -> Counts:
    """Scale the paper's counts to a cohort of ``n_patients`` (exactly the paper's for 100)."""
    if n_patients < MIN_PATIENTS:
        raise InputError(
            f"cohort of {n_patients} patients: splits need at least {MIN_PATIENTS} (75/25 scaled by N/100); "
            "prepare more patients (e.g. suite phantom --patients 40)"
        )
    scale = n_patients / PAPER_N_PATIENTS
    n_val = round_half_up(PAPER_N_VAL * scale)
    n_val_reg = max(1, round_half_up(PAPER_N_VAL_REG * scale))
    n_val_seg = n_val - n_val_reg
    n_train = n_patients - n_val
    kept: dict[int, int] = {}
    dropped: dict[int, int] = {}
    for n in labeled:
        eff = effective_labeled(n, n_patients, n_train)
        if n != PAPER_N_TRAIN and eff >= n_train:
            dropped[n] = eff
        else:
            kept[n] = eff
    if dropped and warn:
        log.warning(
            "cohort of %d patients (%d training): labeled n %s scale to %s and leave no unlabeled patient; "
            "dropped",
            n_patients,
            n_train,
            sorted(dropped),
            [dropped[n] for n in sorted(dropped)],
        )
    return Counts(n_patients, n_val, n_val_seg, n_val_reg, n_train, kept, dropped)


def effective_labeled(n: int, n_patients: int, n_train: int) -> int:
    """The labeled count that paper-scale ``n`` means in this cohort (75 = all training patients)."""
    if n < 1 or n > PAPER_N_TRAIN:
        raise InputError(f"n_labeled={n}: must be between 1 and {PAPER_N_TRAIN} (paper scale)")
    if n == PAPER_N_TRAIN:
        return n_train
    return max(1, round_half_up(n * n_patients / PAPER_N_PATIENTS))


def paper_validation(
    ids: Sequence[str], seed: int = PAPER_SEED, n_val: int = PAPER_N_VAL, n_val_reg: int = PAPER_N_VAL_REG
) -> tuple[list[str], list[str]]:
    """The authors' validation draw: ``random.seed(seed); random.sample(sorted_ids, n_val)``.

    Returns ``(val_seg, val_reg)``: the first ``n_val - n_val_reg`` of the sample in sorted order validate the
    segmenter, the last ``n_val_reg`` the regressor. Uses a private ``random.Random(seed)``, which draws
    exactly what the module-level ``random.seed(seed); random.sample`` draws, without touching the global
    state.
    """
    sorted_ids = sorted(ids)
    sample = random.Random(seed).sample(sorted_ids, n_val)
    val = sorted(sample)
    n_seg = n_val - n_val_reg
    return val[:n_seg], val[n_seg:]


def labeled_order(train: Sequence[str], mode: str, split_seed: int) -> list[str]:
    """The order in which training patients become labeled (prefixes = nested labeled subsets)."""
    train = sorted(train)
    if mode == "paper":
        return train
    if mode == "random":
        return random.Random(derive_seed(split_seed, "labeled")).sample(train, len(train))
    raise InputError(f"split mode {mode!r}: unknown; choose one of {', '.join(MODES)}")


def make_split(
    ids: Sequence[str],
    n_labeled: int,
    mode: str = "paper",
    split_seed: int = PAPER_SEED,
    paper_seed: int = PAPER_SEED,
) -> Split:
    """The split of ``ids`` for paper-scale ``n_labeled`` (a pure function of its arguments).

    ``mode="paper"``: validation drawn with ``split_seed``, labeled = first n training IDs in sorted order.
    ``mode="random"``: validation of the paper (drawn with ``paper_seed``), labeled = first n of a permutation
    seeded by ``split_seed``.
    """
    ids = sorted(ids)
    if len(set(ids)) != len(ids):
        raise InputError("patient IDs are not unique; each patient must appear once")
    c = counts(len(ids), labeled=(), warn=False)
    if mode not in MODES:
        raise InputError(f"split mode {mode!r}: unknown; choose one of {', '.join(MODES)}")
    val_seed = split_seed if mode == "paper" else paper_seed
    val_seg, val_reg = paper_validation(ids, val_seed, c.n_val, c.n_val_reg)
    held = set(val_seg) | set(val_reg)
    train = [p for p in ids if p not in held]
    eff = effective_labeled(n_labeled, len(ids), len(train))
    if n_labeled != PAPER_N_TRAIN and eff >= len(train):
        raise InputError(
            f"n_labeled={n_labeled}: scales to {eff} of the {len(train)} training patients of this "
            f"{len(ids)}-patient cohort and leaves none unlabeled; use a smaller n or a larger cohort"
        )
    order = labeled_order(train, mode, split_seed)
    labeled = sorted(order[:eff])
    lab_set = set(labeled)
    unlabeled = [p for p in train if p not in lab_set]
    return Split(
        labeled=labeled,
        unlabeled=unlabeled,
        val_seg=val_seg,
        val_reg=val_reg,
        n_effective=eff,
        n_labeled=n_labeled,
        mode=mode,
        split_seed=split_seed,
    )


def splits_document(
    ids: Sequence[str], split_seed: int = PAPER_SEED, labeled: Sequence[int] = PAPER_LABELED
) -> dict:
    """The content of ``splits.json``: the paper-mode split for ``split_seed`` and the effective counts.

    Random-mode splits are computed on demand by :meth:`PreparedData.split` (``make_split``); the rule is
    recorded here.
    """
    ids = sorted(ids)
    c = counts(len(ids), labeled)
    val_seg, val_reg = paper_validation(ids, split_seed, c.n_val, c.n_val_reg)
    held = set(val_seg) | set(val_reg)
    train = [p for p in ids if p not in held]
    return {
        "n_patients": len(ids),
        "scale": c.scale,
        "paper_seed": split_seed,
        "counts": {"validation": c.n_val, "val_seg": c.n_val_seg, "val_reg": c.n_val_reg, "train": c.n_train},
        "labeled_effective": {str(n): e for n, e in sorted(c.labeled.items())},
        "dropped": {str(n): e for n, e in sorted(c.dropped.items())},
        "paper": {
            "val_seg": val_seg,
            "val_reg": val_reg,
            "train": train,
            "labeled": {str(n): train[:e] for n, e in sorted(c.labeled.items())},
        },
        "rules": {
            "paper": "random.seed(paper_seed); v = sorted(random.sample(sorted_ids, validation)); "
            "val_seg = v[:val_seg]; val_reg = v[val_seg:]; labeled(n) = train[:n_effective]",
            "random": "validation as paper (paper_seed); labeled(n) = sorted(first n_effective of "
            "random.Random(derive_seed(split_seed, 'labeled')).sample(train, len(train)))",
            "scaling": "validation = round(N/4), val_reg = max(1, round(5N/100)), "
            "labeled n -> max(1, round(n N/100)) "
            "(round half up; n=75 = all training patients); n leaving no unlabeled patient dropped",
        },
    }
