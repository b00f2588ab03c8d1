"""What several verbs share: the recipe and key options, the error line, the quick-exit flag of ``run``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from veil.cli.exits import EXIT_FATAL

__all__ = [
    "Command",
    "add_key_option",
    "add_recipe_option",
    "allow_quick_exit",
    "error",
    "quick_exit_allowed",
]

Command = Callable[[argparse.Namespace], int]
"""A verb's handler: the parsed arguments in, the exit code out."""


def add_recipe_option(parser: argparse.ArgumentParser) -> None:
    """``--recipe``, the research recipe unless told otherwise."""
    parser.add_argument("--recipe", default="research", help="recipe name or YAML path (default: research)")


def add_key_option(parser: argparse.ArgumentParser, help: str = "key file (or set VEIL_KEY)") -> None:
    """``--key KEY``, a key file; a verb that loads a key also reads ``$VEIL_KEY``."""
    parser.add_argument("--key", type=Path, help=help)


def error(command: str, message: object) -> int:
    """Prints ``veil COMMAND: error: MESSAGE`` on stderr; returns :data:`EXIT_FATAL`."""
    print(f"veil {command}: error: {message}", file=sys.stderr)
    return EXIT_FATAL


# Set by `veil run` when the run used no Ray (in this process or a process pool, both finished): the program
# then ends without the interpreter's teardown of numpy, pyarrow and the rest (30 ms of a one-second job).
_QUICK_EXIT: list[bool] = []


def allow_quick_exit() -> None:
    """Lets :func:`veil.cli.main.entry` end the process with ``os._exit`` once the verb has returned."""
    _QUICK_EXIT.append(True)


def quick_exit_allowed() -> bool:
    """Whether a verb of this process called :func:`allow_quick_exit`."""
    return bool(_QUICK_EXIT)
