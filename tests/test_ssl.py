"""The semi-supervised terms' mathematics (``suite.ssl``) against values worked out by hand, and the config
field ``ssl`` with its hyper-parameters: which runs they change, what they refuse."""

from __future__ import annotations

import math

import pytest
import torch

from suite.config import RunConfig
from suite.errors import ConfigError
from suite.ramps import sigmoid_rampup
from suite.ssl import (
    consistency_mse,
    cross_pseudo_supervision,
    ema_decay_at,
    ema_update,
    entropy,
    input_noise,
)


# ------------------------------------------------------------------------------------------------ the math
def test_ramp_up_at_zero_half_and_one():
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5.0), rel=1e-15)
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-1.25), rel=1e-15)
    assert sigmoid_rampup(10, 10) == 1.0
    assert sigmoid_rampup(25, 10) == 1.0 and sigmoid_rampup(-3, 10) == pytest.approx(math.exp(-5.0))
    assert sigmoid_rampup(0, 0) == 1.0  # no ramp-up: the full weight at once


def test_ema_update_on_a_two_parameter_model():
    """nn.Linear(1, 1): a weight and a bias. Step 0 copies the student; step 2 averages with a = 2/3 (the
    true average of three students); from step 99 on the decay 0.99 applies."""
    teacher, student = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        teacher.weight.fill_(1.0), teacher.bias.fill_(2.0)
        student.weight.fill_(3.0), student.bias.fill_(-1.0)
    ema_update(teacher.parameters(), student.parameters(), 0.99, step=0)
    assert (teacher.weight.item(), teacher.bias.item()) == (3.0, -1.0)
    with torch.no_grad():
        student.weight.fill_(6.0), student.bias.fill_(2.0)
    ema_update(teacher.parameters(), student.parameters(), 0.99, step=2)
    f32 = dict(abs=1e-6)  # float32 parameters
    assert teacher.weight.item() == pytest.approx(2 / 3 * 3.0 + 1 / 3 * 6.0, **f32)  # 4.0
    assert teacher.bias.item() == pytest.approx(2 / 3 * -1.0 + 1 / 3 * 2.0, **f32)  # 0.0
    ema_update(teacher.parameters(), student.parameters(), 0.99, step=1000)
    assert teacher.weight.item() == pytest.approx(0.99 * 4.0 + 0.01 * 6.0, **f32)
    assert student.weight.item() == 6.0 and student.bias.item() == 2.0  # the student is never touched
    assert [ema_decay_at(0.99, s) for s in (0, 1, 9, 99, 100)] == pytest.approx([0.0, 0.5, 0.9, 0.99, 0.99])


def test_entropy_of_known_softmaxes():
    """Normalised by log C: a uniform softmax is 1 (up to the 1e-6 inside the log), (1/4, 3/4) is
    −(¼ ln ¼ + ¾ ln ¾)/ln 2 = 0.8113 bits."""
    uniform = torch.zeros(2, 4, 3, 3)
    assert entropy(uniform).item() == pytest.approx(-math.log(0.25 + 1e-6) / math.log(4), rel=1e-6)
    p = torch.tensor([0.25, 0.75])
    logits = p.log().view(1, 2, 1, 1).expand(1, 2, 2, 2)
    h = -sum(q * math.log(q + 1e-6) for q in (0.25, 0.75)) / math.log(2)
    assert entropy(logits).item() == pytest.approx(h, rel=1e-6) and h == pytest.approx(0.8113, abs=1e-4)
    certain = torch.tensor([0.0, 40.0]).view(1, 2, 1, 1)
    assert entropy(certain).item() == pytest.approx(0.0, abs=1e-5)


def test_cps_loss_on_a_2x2_example():
    """Network 1's softmax per pixel: (¼, ¾), (½, ½) / (¾, ¼), (½, ½); network 2's arg-max [[0, 1], [1, 0]]:
    CE = mean(−ln ¼, −ln ½, −ln ¼, −ln ½) = 1.5 ln 2. No gradient reaches network 2."""
    ln3 = math.log(3.0)
    logits1 = torch.zeros(1, 2, 2, 2)
    logits1[0, 1] = torch.tensor([[ln3, 0.0], [-ln3, 0.0]])
    logits1.requires_grad_(True)
    logits2 = torch.zeros(1, 2, 2, 2)
    logits2[0, 1] = torch.tensor([[-1.0, 2.0], [5.0, -3.0]])  # arg-max [[0, 1], [1, 0]]
    logits2.requires_grad_(True)
    loss = cross_pseudo_supervision(logits1, logits2)
    assert loss.item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)
    loss.backward()
    assert logits2.grad is None and logits1.grad is not None and logits1.grad.abs().sum() > 0


def test_consistency_is_the_mean_squared_softmax_difference():
    """One pixel, two channels: student (¼, ¾), teacher (½, ½): squared differences 1/16 each, mean 1/16."""
    student = torch.tensor([0.25, 0.75]).log().view(1, 2, 1, 1).requires_grad_(True)
    teacher = torch.zeros(1, 2, 1, 1, requires_grad=True)
    loss = consistency_mse(student, teacher)
    assert loss.item() == pytest.approx(1 / 16, rel=1e-6)
    loss.backward()
    assert teacher.grad is None and student.grad is not None
    assert consistency_mse(teacher.detach(), teacher.detach()).item() == 0.0


def test_input_noise_is_seeded_and_clamped_at_two_sd():
    draw = lambda seed: input_noise((4, 1, 16, 16), 0.1, torch.Generator().manual_seed(seed), "cpu")  # noqa: E731
    a, b = draw(7), draw(7)
    assert torch.equal(a, b) and not torch.equal(a, draw(8))
    assert float(a.abs().max()) == pytest.approx(0.2) and float(a.std()) == pytest.approx(0.1, rel=0.15)


# ------------------------------------------------------------------------------------------------ config
SEG_METHODS = ("fs", "proposals", "proposed", "oracle")


def test_ssl_none_keeps_every_run_id_and_each_term_changes_every_segmenter_run():
    for m in SEG_METHODS:
        cfg = RunConfig.from_preset("smoke", method=m)
        assert "ssl" not in cfg.identity_keys() and cfg.replace(ssl="none").run_id == cfg.run_id
        ids = {cfg.replace(ssl=s).run_id for s in ("mean_teacher", "entropy_min", "cps")}
        assert len(ids) == 3 and cfg.run_id not in ids
    # the prerequisites carry no term: one regressor and one FS model serve every ssl setting
    mt = RunConfig.from_preset("smoke", method="proposed", ssl="mean_teacher")
    assert (
        mt.regressor_config().run_id
        == RunConfig.from_preset("smoke", method="proposed").regressor_config().run_id
    )
    assert RunConfig.from_preset("smoke", method="proposals", ssl="cps").fs_config().ssl == "none"


def test_hyper_parameters_enter_the_identity_only_where_the_term_reads_them():
    fs = RunConfig.from_preset("smoke", method="fs")
    for field, value in (
        ("ssl_weight", 0.5),
        ("ssl_rampup", 0.5),
        ("ssl_ema_decay", 0.9),
        ("ssl_noise", 0.2),
    ):
        assert fs.replace(**{field: value}).run_id == fs.run_id, field  # ssl none: no effect
    readers = {
        "ssl_weight": ("mean_teacher", "entropy_min", "cps"),
        "ssl_rampup": ("mean_teacher", "entropy_min", "cps"),
        "ssl_ema_decay": ("mean_teacher",),
        "ssl_noise": ("mean_teacher",),
    }
    for field, kinds in readers.items():
        for kind in ("mean_teacher", "entropy_min", "cps"):
            cfg = fs.replace(ssl=kind)
            assert (field in cfg.identity_keys()) == (kind in kinds), (field, kind)
            changed = cfg.replace(**{field: 0.5}).run_id != cfg.run_id
            assert changed == (kind in kinds), (field, kind)
    # with a term, FS uses the unlabeled images: their batch and the update scheme enter its identity
    mt = fs.replace(ssl="mean_teacher")
    assert {"unl_batch", "ssl", "ssl_weight"} <= set(mt.identity_keys())
    assert mt.replace(update="joint").run_id != mt.run_id and fs.replace(update="joint").run_id == fs.run_id


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"ssl": "fixmatch"}, "ssl"),
        ({"stage": "regressor", "method": "regressor", "ssl": "cps"}, "ssl"),
        ({"ssl": "mean_teacher", "ssl_ema_decay": 1.0}, "ssl_ema_decay"),
        ({"ssl": "cps", "ssl_weight": 0.0}, "ssl_weight"),
        ({"ssl": "cps", "ssl_rampup": 2.0}, "ssl_rampup"),
    ],
)
def test_bad_values_are_one_line_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_preset("smoke", **changes)
    msg = str(e.value)
    assert f"field {field}=" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "argv, field",
    [
        (["--set", "ssl=fixmatch"], "ssl"),
        (["--stage", "regressor", "--set", "ssl=mean_teacher"], "ssl"),
    ],
)
def test_cli_refuses_an_unknown_or_inapplicable_term_in_one_line_exit_2(
    prepared_small, tmp_path, capsys, argv, field
):
    from suite.cli import main

    rc = main(["run", "--data", str(prepared_small), "--preset", "smoke", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and f"field {field}=" in err, err
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_an_ssl_term_makes_fs_a_long_run_for_the_planner_and_the_estimate(prepared_small):
    from suite.data.dataset import PreparedData
    from suite.planner import cost_rank
    from suite.run_plan import estimate_epoch_s

    data = PreparedData.open(prepared_small)
    fs = RunConfig.from_preset("smoke", method="fs")
    oracle = fs.replace(method="oracle")
    assert cost_rank(fs) > cost_rank(oracle) == cost_rank(fs.replace(ssl="entropy_min"))
    steps, epoch_s = estimate_epoch_s(fs, data, "cpu")
    steps_em, epoch_em = estimate_epoch_s(fs.replace(ssl="entropy_min"), data, "cpu")
    assert steps_em == estimate_epoch_s(oracle, data, "cpu")[0] > steps
    steps_cps, epoch_cps = estimate_epoch_s(fs.replace(ssl="cps"), data, "cpu")
    assert steps_cps == steps_em and epoch_s is not None and epoch_em is not None and epoch_cps is not None
    assert epoch_cps > epoch_em > epoch_s
