"""Error types: user-facing input errors end in one clear line and exit code 2."""

from __future__ import annotations


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
