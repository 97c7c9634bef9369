"""Splits: the authors' paper split (golden values), nesting, random mode, scaling to N != 100."""

from __future__ import annotations

import json
import logging
import random

import pytest

from suite.data.dataset import PreparedData
from suite.data.splits import (
    PAPER_LABELED,
    counts,
    make_split,
    paper_validation,
    round_half_up,
    splits_document,
)
from suite.errors import InputError

IDS = [f"patient{i:03d}" for i in range(1, 101)]

# random.seed(1); random.sample(IDS, 25), sorted: computed once with CPython's `random` (stable across
# versions)
GOLDEN_VAL_SEED1 = [
    "patient001",
    "patient004",
    "patient009",
    "patient013",
    "patient014",
    "patient016",
    "patient018",
    "patient027",
    "patient030",
    "patient033",
    "patient035",
    "patient041",
    "patient049",
    "patient050",
    "patient056",
    "patient058",
    "patient061",
    "patient063",
    "patient064",
    "patient073",
    "patient076",
    "patient078",
    "patient084",
    "patient093",
    "patient098",
]


def test_paper_validation_golden_seed1():
    val_seg, val_reg = paper_validation(IDS, 1)
    assert val_seg + val_reg == GOLDEN_VAL_SEED1
    assert val_seg == GOLDEN_VAL_SEED1[:20]
    assert val_reg == ["patient076", "patient078", "patient084", "patient093", "patient098"]


def test_paper_validation_equals_module_level_random_and_leaves_global_state():
    for seed in (0, 1, 7, 12345):
        random.seed(seed)
        expected = sorted(random.sample(sorted(IDS), 25))
        state = random.getstate()
        val_seg, val_reg = paper_validation(list(reversed(IDS)), seed)  # input order does not matter
        assert val_seg == expected[:20] and val_reg == expected[20:]
        assert random.getstate() == state, "must not touch the global random state"


def test_paper_split_is_a_pure_function_of_its_seed():
    a, b = make_split(IDS, 10, "paper", 1), make_split(IDS, 10, "paper", 1)
    assert a == b
    c = make_split(IDS, 10, "paper", 2)
    assert c.val_seg != a.val_seg


def test_paper_labeled_are_first_n_sorted_training_patients():
    sp = make_split(IDS, 5, "paper", 1)
    assert sp.labeled == ["patient002", "patient003", "patient005", "patient006", "patient007"]
    train = [p for p in IDS if p not in GOLDEN_VAL_SEED1]
    assert len(train) == 75
    for n in PAPER_LABELED:
        s = make_split(IDS, n, "paper", 1)
        assert s.labeled == train[:n] and s.unlabeled == train[n:] and s.n_effective == n


@pytest.mark.parametrize("mode", ["paper", "random"])
def test_nested_disjoint_and_complete(mode):
    prev: set[str] = set()
    for n in PAPER_LABELED:
        s = make_split(IDS, n, mode, 3)
        lab, unl = set(s.labeled), set(s.unlabeled)
        assert prev <= lab, f"n={n} must contain the smaller labeled sets"
        prev = lab
        assert len(lab) == n and not lab & unl
        assert not (lab | unl) & set(s.val_seg + s.val_reg)
        assert lab | unl | set(s.val_seg) | set(s.val_reg) == set(IDS)
        assert len(s.val_seg) == 20 and len(s.val_reg) == 5
        assert s.labeled == sorted(s.labeled) and s.unlabeled == sorted(s.unlabeled)


def test_random_mode_keeps_paper_validation_and_varies_labeled():
    paper = make_split(IDS, 10, "paper", 1)
    r1, r1b, r2 = (make_split(IDS, 10, "random", s) for s in (1, 1, 2))
    assert r1.val_seg == paper.val_seg and r1.val_reg == paper.val_reg
    assert r2.val_seg == paper.val_seg
    assert r1 == r1b
    assert r1.labeled != r2.labeled
    assert r1.labeled != paper.labeled


def test_round_half_up():
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 7.5, 9.6, 12.8, 2.49)] == [1, 2, 3, 8, 10, 13, 2]


@pytest.mark.parametrize(
    "n_patients, val, seg, reg, train, labeled",
    [
        (100, 25, 20, 5, 75, {5: 5, 10: 10, 20: 20, 30: 30, 40: 40, 75: 75}),
        # 30: val round(7.5)=8, reg max(1, round(1.5))=2; n -> round(n*0.3): 1.5->2, 3, 6, 9, 12; 75 -> all 22
        (30, 8, 6, 2, 22, {5: 2, 10: 3, 20: 6, 30: 9, 40: 12, 75: 22}),
        (32, 8, 6, 2, 24, {5: 2, 10: 3, 20: 6, 30: 10, 40: 13, 75: 24}),
        (40, 10, 8, 2, 30, {5: 2, 10: 4, 20: 8, 30: 12, 40: 16, 75: 30}),
        (60, 15, 12, 3, 45, {5: 3, 10: 6, 20: 12, 30: 18, 40: 24, 75: 45}),
    ],
)
def test_scaled_counts(n_patients, val, seg, reg, train, labeled):
    c = counts(n_patients)
    assert (c.n_val, c.n_val_seg, c.n_val_reg, c.n_train) == (val, seg, reg, train)
    assert c.labeled == labeled and c.dropped == {}
    ids = IDS[:n_patients]
    for n, eff in labeled.items():
        s = make_split(ids, n, "paper", 1)
        assert len(s.labeled) == eff == s.n_effective
        assert len(s.val_seg) == seg and len(s.val_reg) == reg and len(s.labeled) + len(s.unlabeled) == train


def test_scaling_drops_counts_that_leave_no_unlabeled_patient(caplog):
    lg = logging.getLogger("suite.data.splits")  # the suite's loggers do not propagate to the root
    lg.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="suite.data.splits"):
            c = counts(30, labeled=(5, 74))  # 74 * 0.3 = 22.2 -> 22 = all 22 training patients
    finally:
        lg.removeHandler(caplog.handler)
    assert c.labeled == {5: 2} and c.dropped == {74: 22}
    assert "dropped" in caplog.text and "[74]" in caplog.text
    with pytest.raises(InputError, match="n_labeled=74: scales to 22 of the 22 training patients"):
        make_split(IDS[:30], 74)
    doc = splits_document(IDS[:30], 1, labeled=(5, 74))
    assert doc["dropped"] == {"74": 22} and doc["labeled_effective"] == {"5": 2}


def test_too_few_patients_and_bad_n():
    with pytest.raises(InputError, match="at least 30"):
        counts(29)
    with pytest.raises(InputError, match="between 1 and 75"):
        make_split(IDS, 0)
    with pytest.raises(InputError, match="unknown"):
        make_split(IDS, 5, "nope")


def test_splits_json_of_prepared_dataset(prepared_small):
    doc = json.loads((prepared_small / "splits.json").read_text())
    assert doc["n_patients"] == 30 and doc["paper_seed"] == 1
    assert doc["counts"] == {"validation": 8, "val_seg": 6, "val_reg": 2, "train": 22}
    assert doc["labeled_effective"] == {"5": 2, "10": 3, "20": 6, "30": 9, "40": 12, "75": 22}
    ids = [f"patient{i:03d}" for i in range(1, 31)]
    random.seed(1)
    val = sorted(random.sample(ids, 8))
    assert doc["paper"]["val_seg"] == val[:6] and doc["paper"]["val_reg"] == val[6:]
    train = [p for p in ids if p not in val]
    assert doc["paper"]["labeled"]["10"] == train[:3]
    data = PreparedData.open(prepared_small)
    s = data.split(10)
    assert s.labeled == train[:3] and s.val_seg == val[:6] and s.n_effective == 3
    r = data.split(10, "random", 5)
    assert r.val_seg == val[:6] and set(r.labeled) <= set(train) and len(r.labeled) == 3
