"""The ``suite`` command: one entry point with sub-commands (``suite --help``).

Each sub-command lives in ``suite/commands/<name>.py`` and exposes ``register(subparsers)``, which adds its
parser and sets ``func``. Sub-command modules import heavy dependencies (torch, ray, submitit, pandas)
inside their handler, so ``suite --help`` is fast and the core never depends on the optional layers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from suite import __version__
from suite.errors import InputError
from suite.log import setup_logging

# display order; any other module in suite/commands is listed after these
ORDER = ["phantom", "prepare", "info", "run", "tune", "slurm", "report", "demo"]

EPILOG = """\
typical flow:
  suite phantom data/acdc-phantom --patients 100 --seed 0     # or use a real ACDC training folder
  suite prepare data/acdc-phantom data/prepared
  suite run --data data/prepared --stage segmenter --method proposed --labeled 10 --seed 0 --out results/exp
  suite tune --data data/prepared --space paper --preset smoke --seeds 0 1 2 --out results
  suite report results/<experiment>

environment: SUITE_LOG_LEVEL (DEBUG, INFO, WARNING), SUITE_NO_PBAR=1 (no progress bars)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="suite",
        description=(
            "Benchmark suite for curriculum semi-supervised segmentation (Kervadec et al., MICCAI 2019)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import suite.commands as commands

    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    for name in names:
        importlib.import_module(f"suite.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("DEBUG" if args.debug else ("WARNING" if args.quiet else None))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
        return int(rc or 0)
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
        logging.getLogger("suite").debug("unhandled", exc_info=True)
        print(f"error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
