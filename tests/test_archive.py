"""``suite archive``: finished runs' records copied without checkpoints, added to over sessions, conflicts
refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite.archive import archive, plan_archive
from suite.cli import main
from suite.errors import InputError
from suite.experiment import ExperimentRecord, read_record, record_launch
from suite.paths import ExperimentPaths
from suite.testing.synthetic_runs import write_run


def _experiment(root: Path, at: str = "2026-12-08T00:00:00+00:00", **record: object) -> ExperimentPaths:
    exp = ExperimentPaths(root)
    fields = {"name": root.name, "launcher": "ray", "data": "/d", "data_hash": "h0", "space": "repro"}
    fields.update(record)
    record_launch(exp, ExperimentRecord(**fields), {"at": at, "launcher": "ray"})  # type: ignore[arg-type]
    return exp


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def study(tmp_path: Path) -> ExperimentPaths:
    exp = _experiment(tmp_path / "results" / "repro-repro", seeds=[0, 1])
    done = write_run(exp.root, method="fs", seed=0)
    (done.root / "checkpoint_last.pt").write_bytes(b"x" * 1000)
    (done.root / "predictions").mkdir()
    (done.root / "predictions" / "pseudo_labels.npz").write_bytes(b"y" * 100)
    done.log.write_text("a log line\n")
    write_run(exp.root, method="oracle", seed=0)
    write_run(exp.root, method="oracle", seed=1, status="partial", logged_epochs=3)
    write_run(exp.root, method="fs", seed=1, status="failed", logged_epochs=2)
    return exp


def test_only_finished_runs_records_are_copied_and_the_report_reads_them(study, tmp_path, capsys):
    dest = tmp_path / "kept"
    assert main(["archive", str(study.root), str(dest)]) == 0
    out = capsys.readouterr().out
    assert "2 run(s) archived" in out and "1 failed, 1 partial not archived" in out
    kept = ExperimentPaths(dest)
    finished = sorted(rp.run_id for rp in study.all_runs() if rp.is_finished())
    assert [rp.run_id for rp in kept.all_runs()] == finished
    for rp in kept.all_runs():
        source = study.run(rp.run_id)
        names = sorted(p.name for p in rp.root.iterdir())
        assert names == sorted(p.name for p in source.record_files if p.is_file())
        assert "checkpoint_last.pt" not in names and "predictions" not in names
        for name in names:
            assert (rp.root / name).read_bytes() == (source.root / name).read_bytes()
    assert read_record(kept) == read_record(study)

    from analysis.load import load_experiment

    assert len(load_experiment(dest).runs) == 2


def test_archiving_again_adds_new_runs_and_keeps_what_is_there(study, tmp_path):
    dest = tmp_path / "kept"
    archive(study.root, dest)
    (dest / "README.md").write_text("the study's notes\n")
    again = archive(study.root, dest)
    assert not again.new and len(again.present) == 2
    assert len(read_record(ExperimentPaths(dest)).launches) == 1  # not the same launch twice

    # the next session: the partial run finished, a new launch was recorded
    write_run(study.root, method="oracle", seed=1)
    _experiment(study.root, at="2026-12-09T00:00:00+00:00", seeds=[0, 1])
    later = archive(study.root, dest)
    assert list(later.new) == [rp.run_id for rp in study.all_runs() if "oracle-n5-s1" in rp.run_id]
    assert (dest / "README.md").read_text() == "the study's notes\n"
    assert len(read_record(ExperimentPaths(dest)).launches) == 2
    assert len(ExperimentPaths(dest).all_runs()) == 3


def test_a_run_archived_with_other_numbers_is_refused_before_anything_is_written(study, tmp_path, capsys):
    dest = tmp_path / "kept"
    archive(study.root, dest)
    write_run(study.root, method="oracle", seed=1)  # a new run to copy, beside the conflict
    fs = next(rp for rp in study.all_runs() if "fs-n5-s0" in rp.run_id)
    fs.metrics.write_text(fs.metrics.read_text().replace("0.5", "0.6"))  # finished again, elsewhere
    before = _tree(dest)
    assert main(["archive", str(study.root), str(dest)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{dest / 'runs' / fs.run_id / 'metrics.csv'}: differs from" in err and "another folder" in err
    assert _tree(dest) == before


def test_another_experiment_is_not_archived_into_the_same_folder(study, tmp_path):
    dest = tmp_path / "kept"
    archive(study.root, dest)
    other = _experiment(tmp_path / "results" / "other", data_hash="h1")
    write_run(other.root, method="fs", seed=4)
    with pytest.raises(InputError, match=r"experiment.json: archives an experiment with data_hash='h0'"):
        plan_archive(other.root, dest)


@pytest.mark.parametrize(
    "case", ["not an experiment", "into itself", "into its runs", "into its report", "dest is a file"]
)
def test_bad_folders_are_one_line_and_write_nothing(study, tmp_path, capsys, case):
    src, dest = str(study.root), str(tmp_path / "kept")
    if case == "not an experiment":
        src = str(tmp_path)
    elif case == "into itself":
        dest = src
    elif case == "into its runs":
        dest = str(study.runs_dir / "kept")
    elif case == "into its report":
        dest = str(study.root / "report")
    else:
        Path(dest).write_text("a file\n")
    before = _tree(tmp_path)
    assert main(["archive", src, dest]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert {"not an experiment": "no runs/", "dest is a file": "not a folder"}.get(
        case, "give a folder outside it"
    ) in err
    assert _tree(tmp_path) == before


def test_dry_run_writes_nothing(study, tmp_path, capsys):
    dest = tmp_path / "kept"
    assert main(["archive", str(study.root), str(dest), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would copy seg-fs-n5-s0" in out and "2 run(s) to archive" in out
    assert not dest.exists()


def test_a_hand_made_experiment_json_in_dest_is_not_replaced(study, tmp_path):
    dest = tmp_path / "kept"
    dest.mkdir()
    (dest / "experiment.json").write_text(json.dumps({"name": "mine", "space": "repro", "data_hash": "h0"}))
    with pytest.raises(InputError, match="experiment.json exists and was not written by the suite"):
        archive(study.root, dest)
    assert json.loads((dest / "experiment.json").read_text())["name"] == "mine"
    assert not (dest / "runs").exists()


def test_nothing_finished_writes_nothing(tmp_path):
    exp = _experiment(tmp_path / "results" / "early")
    write_run(exp.root, method="oracle", seed=0, status="partial", logged_epochs=2)
    plan = archive(exp.root, tmp_path / "kept")
    assert not plan.new and not (tmp_path / "kept").exists()


def test_launches_are_deduplicated_before_the_cut(study, tmp_path):
    from suite.experiment import MAX_LAUNCHES

    dest = tmp_path / "kept"
    for day in range(MAX_LAUNCHES - 5):  # 46 launches with the fixture's, archived; then 2 more
        _experiment(study.root, at=f"2026-12-{day // 24 + 9:02d}T{day % 24:02d}:00:00+00:00", seeds=[0, 1])
    archive(study.root, dest)
    for day in range(2):
        _experiment(study.root, at=f"2026-12-{day + 20:02d}T00:00:00+00:00", seeds=[0, 1])
    archive(study.root, dest)
    # the archive's 46 and the source's 48 are 48 launches; cut before removing the repeats, the first ones
    # would come after the last of the old ones
    ats = [launch["at"] for launch in read_record(ExperimentPaths(dest)).launches]
    assert len(ats) == MAX_LAUNCHES - 2 == len(set(ats)) and ats == sorted(ats)
    assert ats[-1] == "2026-12-21T00:00:00+00:00"
