"""``suite phantom`` and ``suite prepare`` write only their own files: ``--force`` and every rebuild replace
or remove what the suite wrote in OUT and nothing else; OUT may be ``.``, relative or a symlink; an OUT that
cannot be written (a file, a read-only folder, the source itself) is one line, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from suite.atomic import OUTPUTS_MANIFEST
from suite.cli import main
from suite.data.dataset import PreparedData

USER_FILES = ("notes.txt", "myanalysis/a.csv", "testing/README.txt", "patient002/mine.txt")


def _phantom(out: Path, *args: str) -> int:
    return main(["phantom", str(out), "--workers", "1", *args])


def _suite_files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("manifest", ["kept", "older version"])
def test_phantom_force_keeps_files_the_suite_did_not_write(tmp_path, manifest):
    out = tmp_path / "ph"
    assert _phantom(out, "--patients", "3", "--test-patients", "1") == 0
    if manifest == "older version":  # a cohort written before the suite listed its outputs
        (out / OUTPUTS_MANIFEST).unlink()
    for rel in USER_FILES:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(f"mine: {rel}")
    assert _phantom(out, "--patients", "2", "--seed", "1", "--force") == 0
    for rel in USER_FILES:
        assert (out / rel).read_text() == f"mine: {rel}", rel
    files = [f for f in _suite_files(out) if f not in USER_FILES]
    # patient003 and testing/patient004 (the earlier cohort's) are gone, the new cohort is complete
    assert {f.split("/")[0] for f in files} == {"patient001", "patient002", "phantom.json", OUTPUTS_MANIFEST}
    assert len([f for f in files if f.startswith("patient")]) == 10
    assert json.loads((out / "phantom.json").read_text())["seed"] == 1
    # and the same with the test patients back: the user's testing/README.txt stays beside them
    assert _phantom(out, "--patients", "2", "--seed", "1", "--test-patients", "1", "--force") == 0
    assert (out / "testing" / "patient003" / "Info.cfg").is_file()
    assert (out / "testing" / "README.txt").read_text() == "mine: testing/README.txt"


def test_phantom_force_refuses_to_overwrite_a_user_file_named_like_its_output(tmp_path, capsys):
    out = tmp_path / "ph"
    assert _phantom(out, "--patients", "1") == 0
    (out / "patient002").mkdir()
    (out / "patient002" / "Info.cfg").write_text("mine")
    assert _phantom(out, "--patients", "2", "--force") == 2
    err = capsys.readouterr().err
    assert "patient002/Info.cfg exists and was not written by the suite" in err and err.count("error:") == 1
    assert (out / "patient002" / "Info.cfg").read_text() == "mine"


@pytest.mark.parametrize("command", ["phantom", "prepare"])
def test_out_forms(tmp_path, monkeypatch, capsys, phantom_dir, command):
    def write(out: str) -> int:
        if command == "phantom":
            return _phantom(Path(out), "--patients", "2")
        return main(["prepare", str(phantom_dir), out, "--size", "8"])

    def written(folder: Path) -> bool:
        return (folder / ("phantom.json" if command == "phantom" else "manifest.json")).is_file()

    (tmp_path / "o.txt").write_text("mine")
    assert write(str(tmp_path / "o.txt")) == 2
    err = capsys.readouterr().err
    assert "o.txt: exists and is not a folder" in err and err.count("error:") == 1
    assert write(str(tmp_path / "o.txt" / "x")) == 2
    err = capsys.readouterr().err
    assert "o.txt (Not a directory)" in err and err.count("error:") == 1
    assert (tmp_path / "o.txt").read_text() == "mine"
    # `.` and a relative path: written there, nothing else touched
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert write(".") == 0 and written(here)
    assert write(".") == 0  # and up to date
    assert write("rel") == 0 and written(here / "rel")
    # a symlink: the files go into its target, the link stays a link
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    assert write(str(tmp_path / "link")) == 0
    assert (tmp_path / "link").is_symlink() and written(tmp_path / "target")
    assert not [p for p in tmp_path.rglob(".*.tmp")], "no staging folder left"


@pytest.mark.parametrize("command", ["phantom", "prepare"])
def test_an_out_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys, phantom_dir, command):
    import suite.atomic

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # a read-only folder, whatever the user running the tests (root may write anywhere)
    monkeypatch.setattr(suite.atomic.tempfile, "mkdtemp", refuse)
    out = tmp_path / "ro" / "x"
    if command == "phantom":
        rc = _phantom(out, "--patients", "2")
    else:
        rc = main(["prepare", str(phantom_dir), str(out), "--size", "8"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write in" in err and "Permission denied" in err, err
    assert err.count("error:") == 1 and not out.exists()


def _src_with_testing(phantom_dir: Path, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for k in (1, 2):
        shutil.copytree(phantom_dir / f"patient{k:03d}", src / f"patient{k:03d}")
    shutil.copytree(phantom_dir / "patient003", src / "testing" / "patient003")
    return src


@pytest.mark.parametrize("manifest", ["kept", "older version"])
def test_prepare_force_keeps_files_the_suite_did_not_write(phantom_dir, tmp_path, capsys, manifest):
    src, out = _src_with_testing(phantom_dir, tmp_path), tmp_path / "out"
    assert main(["prepare", str(src), str(out), "--size", "16"]) == 0
    if manifest == "older version":  # prepared before the suite listed its outputs
        (out / OUTPUTS_MANIFEST).unlink()
        (out / "test" / OUTPUTS_MANIFEST).unlink()
    (out / "notes.txt").write_text("mine")
    (out / "test" / "mine.txt").write_text("mine")
    assert main(["prepare", str(src), str(out), "--size", "8", "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "test" / "mine.txt").read_text() == "mine"
    data = PreparedData.open(out)
    assert data.size == 8 and data.test_split() is not None and data.test_split().size == 8
    # a damaged dataset is rebuilt around the user's file too
    (out / "splits.json").unlink()
    assert main(["prepare", str(src), str(out), "--size", "8"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and PreparedData.open(out).size == 8
    # SRC's testing/ removed: the test split is to go, but not the user's file in it; moved away, it goes
    shutil.rmtree(src / "testing")
    capsys.readouterr()
    assert main(["prepare", str(src), str(out), "--size", "8"]) == 2
    err = capsys.readouterr().err
    assert "mine.txt: not written by the suite" in err and err.count("error:") == 1
    assert (out / "test" / "mine.txt").exists() and (out / "test" / "manifest.json").exists()
    (out / "test" / "mine.txt").unlink()
    assert main(["prepare", str(src), str(out), "--size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "test split removed" in printed and "rewritten" not in printed
    assert not (out / "test").exists() and (out / "notes.txt").exists()


def test_prepare_out_is_src(phantom_dir, tmp_path, capsys):
    src = _src_with_testing(phantom_dir, tmp_path)
    for out in (src, src / "."):
        assert main(["prepare", str(src), str(out), "--size", "8"]) == 2
        err = capsys.readouterr().err
        assert "is the source folder SRC" in err and err.count("error:") == 1
    assert sorted(p.name for p in src.iterdir()) == ["patient001", "patient002", "testing"]


def test_a_source_folder_given_as_prepared_data_says_to_prepare_it(phantom_dir, tmp_path, capsys):
    release = tmp_path / "release"
    (release / "training").mkdir(parents=True)
    (release / "training" / "patient001").symlink_to(phantom_dir / "patient001")
    for folder in (phantom_dir, release):
        assert main(["info", str(folder)]) == 2
        err = capsys.readouterr().err
        assert f"run `suite prepare {folder} OUT` and pass OUT" in err and "--force" not in err
    # the advice works
    assert main(["prepare", str(release), str(tmp_path / "p"), "--size", "8"]) == 0
    assert main(["info", str(tmp_path / "p")]) == 0
