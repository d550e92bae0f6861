"""The one ``mamakit`` command. Each subcommand is a module with ``add_parser`` and ``run``.

Subcommand modules import nothing heavy at module level (torch, onnxruntime, diffusers are
imported inside ``run``), so ``mamakit --help`` and ``--version`` answer instantly and work
without torch. Errors from the library arrive as :class:`mamakit.errors.MamakitError` and
leave as one line on stderr with the exit code of their class (see :mod:`mamakit.errors`).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from typing import Sequence

from mamakit._version import __version__

#: subcommand name -> module implementing it (``add_parser(subparsers)`` and ``run(args) -> int``).
COMMANDS: dict[str, str] = {
    "eval": "mamakit.cli.eval_cmd",
    "synth": "mamakit.cli.synth_cmd",
    "label": "mamakit.teacher.cli",
    "distill": "mamakit.student.cli",
    "export": "mamakit.export.cli",
    "run": "mamakit.runtime.cli",
    "bench": "mamakit.cli.bench_cmd",
    "demo": "mamakit.cli.demo_cmd",
}

log = logging.getLogger("mamakit")


class UsageError(Exception):
    """Raised by the argument parser instead of printing usage and exiting."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (exit 2) instead of a usage dump."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _available_commands() -> dict[str, str]:
    out = {}
    for name, module in COMMANDS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                out[name] = module
        except ModuleNotFoundError:
            continue
    return out


def build_parser() -> Parser:
    parser = Parser(
        prog="mamakit",
        description="Distil the VideoMaMa video matting teacher into real-time students and run them live.",
    )
    parser.add_argument("--version", action="version", version=f"mamakit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, module in _available_commands().items():
        importlib.import_module(module).add_parser(sub)
    return parser


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if not debug else "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("mamakit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _error_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"error: {msg}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Returns the exit code (and exits with it when run as a script)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MAMAKIT_DEBUG") == "1"
    from mamakit.errors import MamakitError

    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "_accepts_extra", False):
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see `mamakit --help`)")
        args.extra = extra
        setup_logging(args.debug, args.quiet)
        if not args.command:
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(_error_line(exc), file=sys.stderr)
        return 2
    except MamakitError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print(_error_line(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 0
    except BrokenPipeError:
        return 0
    except Exception as exc:  # an unexpected failure during work: one line, exit 1
        if debug:
            raise
        print(_error_line(exc) + " (run with --debug for the traceback)", file=sys.stderr)
        return 1


def entry() -> None:  # pragma: no cover
    sys.exit(main())
