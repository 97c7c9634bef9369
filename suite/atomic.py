"""Atomic writes: write to a temporary path beside the target, then rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process umask (there is no getter: set and restore it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _readable_like_open(path: str | os.PathLike) -> None:
    """mkstemp creates 0600 files; give a result the mode a plain ``open`` would (0666 minus the umask), so
    lab-mates in the user's group can read results as the umask allows (folders come from ``mkdir``)."""
    os.chmod(path, 0o666 & ~current_umask())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    _readable_like_open(tmp)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path; on success it is renamed onto ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    _readable_like_open(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


OUTPUTS_MANIFEST = ".suite-outputs.json"


@contextmanager
def suite_outputs(
    folder: str | os.PathLike,
    option: str = "--out",
    adopt: Iterable[str] = (),
    keep_previous: bool = False,
) -> Iterator[Path]:
    """Write a set of files into ``folder`` without ever touching a file the suite did not write there.

    Yields an empty private staging folder (a hidden one inside ``folder``, or above it while it is
    missing); on success each staged file is moved into ``folder`` (one ``os.replace`` each), files that the
    previous run listed in ``folder/.suite-outputs.json`` and that are no longer produced are removed, and
    the manifest is rewritten. Anything else in ``folder`` — a user's notes, a LaTeX file beside the report —
    is left alone. A staged name that already exists in ``folder`` but is not in the manifest is refused
    before anything moves (``InputError``: it would overwrite a file the suite did not write). On error
    nothing in ``folder`` changes.

    ``adopt``: names in ``folder`` that the suite wrote before it kept this manifest (the caller recognises
    them by its own record, e.g. a cohort's ``phantom.json``); taken as the previous outputs without one.
    ``folder`` may be ``.``, relative or a symlink: the files go into the folder it names.
    ``keep_previous=True`` (outputs that add up, e.g. ``suite export``'s files of one split beside another's):
    the suite's earlier files that are not produced again are kept, and stay listed in the manifest.
    """
    from suite.errors import InputError
    from suite.paths import output_folder

    folder = output_folder(Path(folder), option).resolve()
    manifest = folder / OUTPUTS_MANIFEST
    previous = _read_outputs_manifest(manifest) if manifest.exists() else _plain_names(adopt)
    # staged inside the folder when it exists (its parent may be read-only), else in the nearest existing
    # folder above it (nothing is created before the outputs are complete)
    base = next(d for d in (folder, *folder.parents) if d.exists())
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=base))
    except OSError as e:
        raise InputError(
            f"{option} {folder}: cannot write in {base} ({e.strerror}); choose a folder you can write to"
        ) from None
    try:
        yield stage
        produced = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
        foreign = [r for r in produced if (folder / r).exists() and r not in previous]
        if foreign:
            raise InputError(
                f"{option} {folder}: {foreign[0]} exists and was not written by the suite; "
                "move it away or choose another folder"
            )
        folder.mkdir(parents=True, exist_ok=True)  # umask-respecting, unlike the private staging folder
        for rel in produced:
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, target)
        kept = sorted(r for r in previous - set(produced) if (folder / r).exists()) if keep_previous else []
        for rel in sorted(previous - set(produced) - set(kept)):
            (folder / rel).unlink(missing_ok=True)
            _remove_empty_parents(folder, (folder / rel).parent)
        write_json_atomic(manifest, {"files": sorted([*produced, *kept])})
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def recorded_outputs(folder: str | os.PathLike) -> set[str]:
    """The files that the suite's outputs manifest in ``folder`` lists (empty without one)."""
    return _read_outputs_manifest(Path(folder) / OUTPUTS_MANIFEST)


def _read_outputs_manifest(manifest: Path) -> set[str]:
    from suite.errors import InputError

    if not manifest.exists():
        return set()
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(
            f"{manifest}: unreadable list of the suite's earlier outputs ({type(e).__name__}); "
            "delete that file (the outputs it listed are then kept, not replaced) or choose another folder"
        ) from e
    return _plain_names(files)


def _plain_names(files: Iterable[object]) -> set[str]:
    """Only plain relative names inside the folder: a tampered manifest must not reach outside it."""
    return {
        f for f in files if isinstance(f, str) and not Path(f).is_absolute() and ".." not in Path(f).parts
    }


def remove_suite_outputs(folder: str | os.PathLike, adopt: Iterable[str] = ()) -> list[str]:
    """Remove what the suite wrote in ``folder`` (the files its manifest lists, or ``adopt`` without one), the
    manifest, and ``folder`` itself when that leaves it empty.

    Returns the files in ``folder`` that the suite did not write; when there is one, nothing is removed (the
    caller says in one line why it wanted the folder gone and names the file)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    manifest = folder / OUTPUTS_MANIFEST
    ours = _read_outputs_manifest(manifest) if manifest.exists() else _plain_names(adopt)
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())
    foreign = [r for r in present if r not in ours and r != OUTPUTS_MANIFEST]
    if foreign:
        return foreign
    for rel in sorted(ours):
        (folder / rel).unlink(missing_ok=True)
        _remove_empty_parents(folder, (folder / rel).parent)
    manifest.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()
    return []


def _remove_empty_parents(top: Path, d: Path) -> None:
    while d != top and d.is_dir() and not any(d.iterdir()):
        d.rmdir()
        d = d.parent
