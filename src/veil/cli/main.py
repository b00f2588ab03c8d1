"""The ``veil`` program: the top-level parser, the error-to-exit-code mapping and the entry point.

Each verb lives in its own module of :mod:`veil.cli` with ``add_parser(subparsers)`` and ``command(args)``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
from collections.abc import Sequence

from veil._version import __version__
from veil.cli.common import Command, quick_exit_allowed
from veil.cli.exits import (
    EXIT_FATAL,
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_QUARANTINED,
    EXIT_USAGE,
)
from veil.errors import VeilError

__all__ = [
    "EXIT_FATAL",
    "EXIT_FINDINGS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_QUARANTINED",
    "EXIT_USAGE",
    "add_parsers",
    "entry",
    "main",
]

# In the order `veil --help` lists them; each module of veil.cli is named for its verb.
_VERBS = ("synth", "keygen", "deidentify", "run", "audit", "report", "reidentify", "recipe", "peek", "verify",
          "inspect", "profile", "users", "review", "serve", "pull", "push")


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
                verbs: Sequence[str] = _VERBS) -> dict[str, Command]:
    """Adds the verbs (default: every one) to ``subparsers``; returns command name -> handler (which returns the
    exit code). Each verb's module is imported here."""
    commands: dict[str, Command] = {}
    for name in verbs:
        verb = importlib.import_module(f"veil.cli.{name}")
        verb.add_parser(subparsers)
        commands[name] = verb.command
    return commands


def _parser(argv: Sequence[str] | None = None) -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The parser; for a command line that names a verb first, with that verb alone (a run's start-up does not
    import and build the other sixteen), else with every verb (``veil --help``, a mistyped verb)."""
    p = argparse.ArgumentParser(prog="veil", description="High-throughput DICOM de-identification.")
    p.add_argument("--version", action="version", version=f"veil {__version__}")
    args = list(sys.argv[1:] if argv is None else argv)
    verbs = args[:1] if args and args[0] in _VERBS else _VERBS
    commands = add_parsers(p.add_subparsers(dest="command", required=True), verbs)
    return p, commands


def main(argv: Sequence[str] | None = None) -> int:
    """Parses ``argv`` (default: the command line), runs the verb and returns its exit code; a veil error is
    one line on stderr and :data:`EXIT_FATAL`."""
    # veil calls no BLAS routine that needs threads; numpy's OpenBLAS would start one per core at import, and
    # they spin for a while, taking a core from the workers on a small machine. (Before numpy is imported.)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser, commands = _parser(argv)
    args = parser.parse_args(argv)
    try:
        return commands[args.command](args)
    except VeilError as exc:  # RecipeError, KeyError_, MalformedDicom, ...
        print(f"veil: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("veil: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The ``veil`` program: :func:`main`, then its exit status. After a local `veil run` everything it wrote
    is closed and renamed (outputs, audit parts fsynced, the manifest), so only stdout, stderr and logging
    are flushed before ``os._exit``; any other command, or a run that started Ray, exits normally."""
    code = main()
    if quick_exit_allowed() and "ray" not in sys.modules and threading.active_count() == 1:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
