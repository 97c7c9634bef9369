"""Logging configured once; level from ``SUITE_LOG_LEVEL``; progress bars only on a TTY."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_CONFIGURED = False


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not the stream current at set-up: a
    process that swaps stderr (pytest's capture, a notebook, a job wrapper) would otherwise leave this handler
    on a closed file ("I/O operation on closed file")."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level() -> str:
    """The level named by ``SUITE_LOG_LEVEL`` (default INFO); an unknown name is an input error."""
    from suite.errors import InputError

    name = os.environ.get("SUITE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if name not in LEVELS:
        raise InputError(
            f"SUITE_LOG_LEVEL={os.environ['SUITE_LOG_LEVEL']!r} is not a log level; "
            f"use one of {', '.join(LEVELS)} (or unset it for INFO)"
        )
    return name


def setup_logging(level: str | int | None = None) -> None:
    """Configure the root ``suite`` loggers once (idempotent); ``None`` reads ``SUITE_LOG_LEVEL``."""
    global _CONFIGURED
    if level is None:
        level = log_level()
    if isinstance(level, str):
        level = getattr(logging, level.upper())
    if not _CONFIGURED:
        handler = _CurrentStderrHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
        for name in ("suite", "search_spaces", "slurm", "analysis"):
            lg = logging.getLogger(name)
            lg.addHandler(handler)
            lg.propagate = False
        _CONFIGURED = True
    for name in ("suite", "search_spaces", "slurm", "analysis"):
        logging.getLogger(name).setLevel(level)


def progress_enabled() -> bool:
    """Progress bars are shown only on an interactive terminal and never under CI or SUITE_NO_PBAR."""
    if os.environ.get("SUITE_NO_PBAR") or os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, **kw) -> Iterator[T]:
    """Wrap an iterable in a tqdm bar when on a TTY, else return it unchanged."""
    if not progress_enabled():
        yield from iterable
        return
    from tqdm import tqdm

    yield from tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, **kw)
