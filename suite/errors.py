"""Error types: user-facing input errors end in one clear line and exit code 2."""

from __future__ import annotations

import re


class SuiteError(Exception):
    """Base class of the suite's own errors."""


class InputError(SuiteError):
    """Bad user input (file, folder, option or config field).

    The message must name the file or field, the problem and how to fix it, on one line.
    The CLI prints ``error: <message>`` and exits with code 2 (traceback only with ``--debug``).
    """

    exit_code = 2


class ConfigError(InputError):
    """An unknown or invalid configuration key/value."""


# import name -> distribution name, where a dependency's differ
_DISTRIBUTION_OF = {"yaml": "PyYAML"}
_OWN_PACKAGES = ("suite", "search_spaces", "slurm", "analysis")


def missing_dependency(error: ModuleNotFoundError) -> InputError | None:
    """The one-line error for a third-party package that is not installed (``None`` for the suite's own
    modules: a missing one of those is a bug). The fix names the requirement as ``pyproject.toml`` declares
    it (read from the installed metadata), e.g. ``pip install 'ray[default,train,tune]>=2.49'``."""
    top = (error.name or "").split(".")[0]
    if not top or top in _OWN_PACKAGES:
        return None
    dist = _DISTRIBUTION_OF.get(top, top)
    spec = dist
    try:
        from importlib.metadata import PackageNotFoundError, requires

        declared = requires("curriculum-suite") or []
    except PackageNotFoundError:
        declared = []
    for req in declared:
        requirement = req.split(";")[0].strip()  # "ray[default,train,tune]>=2.49"
        name = re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0]
        if name.lower().replace("_", "-") == dist.lower():
            spec = requirement
            break
    return InputError(
        f"needs the Python package {dist!r}, which is not installed: pip install '{spec}' "
        "(or install the suite with all its dependencies: pip install .)"
    )
