"""`suite evaluate` and `suite export` on damaged or mismatched inputs: the suite's own records
(test_metrics.csv, evaluation.json) damaged → evaluated again; a checkpoint or state_dict that does not fit,
a damaged originals.npz, options that do not apply, an OUT that is a run → one line and exit 2; one bad run
of an experiment does not stop the others; a second export keeps the first one's files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from suite.cli import main
from suite.data.dataset import PreparedData
from suite.data.phantom.cohort import _write_patient, patient_group
from suite.data.prepare import prepare
from suite.paths import RunPaths
from suite.stages.runner import execute
from suite.testing.small_runs import small_run_config

AUTHORS_SD = Path(__file__).parent / "data" / "authors_networks" / "enet_authors_state_dict.pt"


@pytest.fixture(scope="module")
def prepared(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset (32², crop 0.6) with a held-out test split of two patients."""
    root = tmp_path_factory.mktemp("release") / "acdc"
    root.mkdir()
    (root / "training").symlink_to(phantom_dir)
    for k in (31, 32):
        _write_patient((k, 0, patient_group(k), str(root / "testing")))
    out = tmp_path_factory.mktemp("prepared") / "p32"
    prepare(root, out, size=32, crop=0.6)
    return out


@pytest.fixture(scope="module")
def trained(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> RunPaths:
    """One finished FS segmenter run (test split evaluated after training); tests work on copies."""
    return execute(small_run_config(prepared, seg_epochs=2), tmp_path_factory.mktemp("exp") / "exp")


@pytest.fixture
def run(trained: RunPaths, tmp_path: Path) -> RunPaths:
    exp = tmp_path / "exp"
    shutil.copytree(trained.root.parent.parent, exp)
    return RunPaths(exp / "runs" / trained.run_id)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of the last command (asserting that it is one line)."""
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


# ---------------------------------------------------------------------------------------------- own records
@pytest.mark.parametrize("damage", ["bytes", "rows"])
def test_a_damaged_test_metrics_csv_is_not_up_to_date(run, capsys, damage):
    good = run.test_metrics.read_text()
    lines = good.splitlines(keepends=True)
    # cut inside a row (`head -c`), or at a row's end (header + one row): both read as rows with csv
    run.test_metrics.write_text(
        good[: len(lines[0]) + len(lines[1]) + 40] if damage == "bytes" else lines[0] + lines[1]
    )
    assert main(["evaluate", str(run.root)]) == 0
    assert "up to date" not in capsys.readouterr().out
    assert run.test_metrics.read_text() == good  # deterministic on CPU: the same rows again


def test_an_evaluation_recorded_with_the_label_map_taken_back_is_done_again(run, capsys):
    # a record from before the probabilities went back (no way_back): its HD95/ASSD are of another definition
    record = json.loads(run.evaluation.read_text())
    assert record["test"]["source"].pop("way_back") == "probabilities"
    run.evaluation.write_text(json.dumps(record))
    assert main(["evaluate", str(run.root)]) == 0
    assert "up to date" not in capsys.readouterr().out
    assert json.loads(run.evaluation.read_text())["test"]["source"]["way_back"] == "probabilities"
    assert main(["evaluate", str(run.root)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_an_unreadable_evaluation_json_is_no_record(run, capsys):
    good = run.test_metrics.read_text()
    for argv in (["--force"], []):
        run.evaluation.write_text("{")
        assert main(["evaluate", str(run.root), *argv]) == 0
        assert "evaluated" in capsys.readouterr().out
        assert json.loads(run.evaluation.read_text())["test"]["rows"] == len(good.splitlines()) - 1
    assert run.test_metrics.read_text() == good


def test_one_bad_run_of_an_experiment_does_not_stop_the_others(run, capsys):
    exp = run.root.parent.parent
    bad = RunPaths(exp / "runs" / "seg-fs-n5-s0-aaaabad")
    shutil.copytree(run.root, bad.root)
    bad.checkpoint_last.write_bytes(b"not a checkpoint")
    run.evaluation.write_text("{")
    assert main(["evaluate", str(exp), "--force"]) == 2
    captured = capsys.readouterr()
    assert f"{run.run_id}: test split evaluated" in captured.out
    assert f"{bad.run_id}: failed: {bad.checkpoint_last}" in captured.out
    err = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and bad.run_id in err[0] and run.run_id not in err[0]


# ---------------------------------------------------------------------------------------------- checkpoints
def _edit_best(run: RunPaths, edit) -> None:
    ck = torch.load(run.checkpoint_best, weights_only=True)
    torch.save(edit(ck), run.checkpoint_best)


def _set(d: dict, key: str, value: object) -> dict:
    d[key] = value
    return d


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda ck: _set(ck["model"], next(iter(ck["model"])), torch.zeros(3, 3)) and ck, "do not fit"),
        (lambda ck: _set(ck, "epoch", "x"), "'epoch'"),
        (lambda ck: {k: v for k, v in ck.items() if k != "model"}, "no 'model'"),
        (lambda ck: _set(ck, "model", [1, 2]), "list"),
        (lambda ck: [1, 2], "holds a list"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_one_line(run, capsys, edit, says):
    _edit_best(run, edit)
    assert main(["evaluate", str(run.root), "--force"]) == 2
    err = _error(capsys)
    assert str(run.checkpoint_best) in err and says in err and "delete the run directory" in err
    assert main(["export", str(run.root), str(run.root.parent / "nii"), "--checkpoint", "best"]) == 2
    assert str(run.checkpoint_best) in _error(capsys)


def test_a_config_changed_after_training_is_one_line(run, capsys):
    cfg = json.loads(run.config.read_text())
    run.config.write_text(json.dumps({**cfg, "seg_out_channels": 4}))
    assert main(["evaluate", str(run.root), "--force"]) == 2
    err = _error(capsys)
    assert "do not fit the run's network" in err and "size mismatch for" in err
    assert str(run.checkpoint_last) in err


# ---------------------------------------------------------------------------------------------- state_dict
def _sd_argv(prepared: Path, sd: Path | str, out: Path, reg_arch: bool = True) -> list[str]:
    sets = ["image_size=32", *(["reg_arch=resnext"] if reg_arch else []), "threads=1", "device=cpu"]
    return [
        "evaluate",
        "--state-dict",
        str(sd),
        "--data",
        str(prepared),
        *(a for s in sets for a in ("--set", s)),
        str(out),
    ]


@pytest.mark.parametrize("content", [[1, 2], {"a": 1}, {}, "missing"])
def test_a_state_dict_file_that_is_not_one_is_one_line(prepared, tmp_path, capsys, content):
    sd = tmp_path / "sd.pt"
    if content != "missing":
        torch.save(content, sd)
    assert main(_sd_argv(prepared, sd, tmp_path / "out")) == 2
    err = _error(capsys)
    assert str(sd) in err and ("does not exist" in err if content == "missing" else "not a state_dict" in err)


def test_state_dict_refuses_a_run_as_out_and_merges_its_record(run, prepared, tmp_path, capsys):
    before = {p: p.read_bytes() for p in (run.test_metrics, run.evaluation)}
    for out in (run.root, run.root.parent.parent):
        assert main(_sd_argv(prepared, AUTHORS_SD, out)) == 2
        assert "a run directory or an experiment folder" in _error(capsys)
    assert {p: p.read_bytes() for p in before} == before
    out = tmp_path / "authors"
    assert main(_sd_argv(prepared, AUTHORS_SD, out)) == 0
    assert main([*_sd_argv(prepared, AUTHORS_SD, out)[:-1], "--split", "val", str(out)]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    splits = [r["split"] for r in _rows(out / "test_metrics.csv")]
    assert {s: record[s]["rows"] for s in ("test", "val")} == {s: splits.count(s) for s in ("test", "val")}


@pytest.mark.parametrize(
    "option", [["--set", "image_size=64"], ["--preset", "code"], ["--checkpoint", "final"]]
)
def test_state_dict_options_on_a_run_are_refused(run, capsys, option):
    assert main(["evaluate", str(run.root), *option]) == 2
    assert "apply only with --state-dict" in _error(capsys)


# ---------------------------------------------------------------------------------------------- originals
@pytest.mark.parametrize("where", ["test", "root"])
@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_originals_npz_names_the_prepare_command_that_repairs_it(
    run, prepared, tmp_path, capsys, where, damage
):
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    npz = (data / "test" if where == "test" else data) / "originals.npz"
    if damage == "missing":
        npz.unlink()
    else:
        npz.write_bytes(npz.read_bytes()[:300])
    split = ["--split", "test" if where == "test" else "val"]
    assert main(["evaluate", str(run.root), "--data", str(data), "--force", *split]) == 2
    err = _error(capsys)
    assert str(npz) in err
    command = err.split("`")[1]
    assert command.startswith(f"suite prepare {PreparedData.open(prepared).manifest['source']} {data} ")
    assert main(["export", str(run.root), str(tmp_path / "nii"), "--data", str(data), *split]) == 2
    assert str(npz) in _error(capsys)
    # the named command repairs it, keeping the data hash (the run's data still)
    assert main(command.split()[1:]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run.root), "--data", str(data), "--force", *split]) == 0


# ---------------------------------------------------------------------------------------------- export
def test_a_second_export_keeps_the_first_ones_files(run, tmp_path):
    out = tmp_path / "nii"
    assert main(["export", str(run.root), str(out)]) == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.nii.gz")}
    (out / "notes.txt").write_text("mine")
    assert main(["export", str(run.root), str(out), "--split", "val"]) == 0
    now = {p.name: p.read_bytes() for p in out.glob("*.nii.gz")}
    assert len(now) > len(first) and all(now[k] == v for k, v in first.items())
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("damage", ["bytes", "rows"])
def test_the_report_warns_of_a_damaged_test_metrics_csv_with_a_fix_that_works(run, capsys, damage):
    from analysis.report import build_report

    good = run.test_metrics.read_text()
    lines = good.splitlines(keepends=True)
    run.test_metrics.write_text(lines[0] + lines[1][:30] if damage == "bytes" else lines[0] + lines[1])
    md = build_report(run.root.parent.parent, figures=False).markdown.read_text()
    warnings = md.split("## Warnings\n", 1)[1].split("\n## ", 1)[0]
    warning = next(ln for ln in warnings.splitlines() if str(run.test_metrics) in ln)
    fix = warning.rsplit("`", 2)[1]
    assert fix == f"suite evaluate {run.root}"
    assert main(fix.split()[1:]) == 0
    assert "up to date" not in capsys.readouterr().out and run.test_metrics.read_text() == good


def test_moved_or_other_data_names_the_data_option(run, prepared, phantom_dir, tmp_path, capsys):
    cfg = json.loads(run.config.read_text())
    run.config.write_text(json.dumps({**cfg, "data": str(tmp_path / "moved")}))
    for cmd in (["evaluate", str(run.root)], ["export", str(run.root), str(tmp_path / "nii")]):
        assert main(cmd) == 2
        assert "pass --data PREPARED where it is now" in _error(capsys)
    assert main(["evaluate", str(run.root), "--data", str(prepared)]) == 0
    other = tmp_path / "p16"
    prepare(phantom_dir, other, size=16)
    assert main(["evaluate", str(run.root), "--data", str(other)]) == 2
    err = _error(capsys)
    assert "was trained on data_hash" in err and "clear data_hash" not in err


def test_state_dict_at_a_small_size_needs_no_regressor_setting(prepared, tmp_path, capsys):
    # the regressor plays no part: the code preset's resnext-authors (200-416 px only) must not refuse 32 px,
    # whether the preset or the user names it (the config's rule binds only runs that build a regressor)
    assert main(_sd_argv(prepared, AUTHORS_SD, tmp_path / "out", reg_arch=False)) == 0
    argv = _sd_argv(prepared, AUTHORS_SD, tmp_path / "out", reg_arch=False)
    assert main([*argv[:-1], "--set", "reg_arch=resnext-authors", argv[-1]]) == 0


# ---------------------------------------------------------------------------------------------- one read
def test_each_checkpoint_is_read_once_and_every_prediction_takes_one_forward_loop(run, monkeypatch):
    import numpy as np

    import suite.inference as inference
    from suite.config import RunConfig
    from suite.stages.proposals import make_pseudo_labels

    loaded: list[str] = []
    real_load = torch.load
    monkeypatch.setattr(
        torch, "load", lambda f, *a, **k: loaded.append(Path(f).name) or real_load(f, *a, **k)
    )
    batches: list[int] = []
    real_logits = inference._logits

    def logits(*args):
        for i, out in real_logits(*args):
            batches.append(len(out))
            yield i, out

    monkeypatch.setattr(inference, "_logits", logits)
    assert main(["evaluate", str(run.root), "--force"]) == 0  # final and best: weights and epoch, one read
    assert sorted(loaded) == ["checkpoint_best.pt", "checkpoint_last.pt"] and batches
    # a Proposals run's pseudo-labels: the FS run's best checkpoint, read once, through the same loop
    loaded.clear()
    batches.clear()
    cfg = RunConfig.from_config_json(json.loads(run.config.read_text()), source="config.json")
    images = np.zeros((5, cfg.image_size, cfg.image_size), dtype=np.uint8)
    labels, epoch = make_pseudo_labels(cfg, run, images, np.arange(5), torch.device("cpu"))
    assert loaded == ["checkpoint_best.pt"] and batches == [5] and labels.shape == images.shape
