"""The ``suite`` command: one entry point with sub-commands (``suite --help``).

Each sub-command lives in ``suite/commands/<name>.py`` and exposes ``register(subparsers)``, which adds its
parser and sets ``func``. Sub-command modules import heavy dependencies (torch, ray, submitit, pandas)
inside their handler, so ``suite --help`` is fast and the core never depends on the optional layers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from typing import Any

from suite import __version__
from suite.errors import InputError, missing_dependency
from suite.log import log_level, setup_logging

# display order; any other module in suite/commands is listed after these
ORDER = [
    "phantom",
    "prepare",
    "info",
    "run",
    "tune",
    "slurm",
    "evaluate",
    "export",
    "report",
    "archive",
    "demo",
]

EPILOG = """\
typical flow:
  suite phantom data/acdc-phantom --patients 100 --seed 0     # or use a real ACDC training folder
  suite prepare data/acdc-phantom data/prepared
  suite run --data data/prepared --stage segmenter --method proposed --labeled 10 --seed 0 --out results/exp
  suite tune --data data/prepared --space paper --preset smoke --seeds 0 1 2 --out results
  suite evaluate results/<experiment>                          # held-out test split (runs do it themselves)
  suite export results/<experiment>/runs/<run_id> exported/    # predictions as NIfTI
  suite report results/<experiment>
  suite archive results/<experiment> kept/<experiment>         # the finished runs without checkpoints

environment: SUITE_LOG_LEVEL (DEBUG, INFO, WARNING), SUITE_NO_PBAR=1 (no progress bars)
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' own line breaks and appends ``(default: X)`` to every option that has a real
    default (``None``/``False`` mean "not given": the preset or config decides, and the help says so)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text  # the help states it in its own words
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
            or not action.option_strings
        ):
            return action.help
        return f"{text} (default: %(default)s)"


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--debug`` and ``-q`` on the top parser and again on every sub-command, so they work on either side
    of it (``suite -q run ...`` and ``suite run ... -q``). On sub-commands the default is SUPPRESS, so an
    option given before the sub-command is not reset by the sub-parser's default."""
    default: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs", **default)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors", **default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="suite",
        description=(
            "Benchmark suite for curriculum semi-supervised segmentation (Kervadec et al., MICCAI 2019)."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import suite.commands as commands

    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    for name in names:
        importlib.import_module(f"suite.commands.{name}").register(sub)
    for sub_parser in _all_subparsers(sub):
        sub_parser.formatter_class = HelpFormatter
        _add_global_options(sub_parser, top=False)
    return parser


def _all_subparsers(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    """Every sub-command parser, nested ones (``suite slurm submit``) included, each once."""
    found: list[argparse.ArgumentParser] = []
    stack = list(dict.fromkeys(sub.choices.values()))
    while stack:
        p = stack.pop(0)
        if p in found:
            continue
        found.append(p)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return found


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # SUITE_LOG_LEVEL is checked here, inside the error handling: a bad value is one line, exit 2
        level = "DEBUG" if args.debug else ("WARNING" if args.quiet else log_level())
        setup_logging(level)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        rc = args.func(args)
        sys.stdout.flush()
        return int(rc or 0)
    except BrokenPipeError:
        # `suite info ... | head`: the reader left; that is not an error. Point stdout at /dev/null so the
        # interpreter's final flush does not raise a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except InputError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # last resort: one line unless --debug
        if args.debug:
            raise
        missing = missing_dependency(e) if isinstance(e, ModuleNotFoundError) else None
        if missing is not None:  # a third-party package absent from a partial install: name the fix
            print(f"error: suite {args.command}: {missing}", file=sys.stderr)
            return missing.exit_code
        logging.getLogger("suite").debug("unhandled", exc_info=True)
        print(f"error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
