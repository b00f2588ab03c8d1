"""``python -m veil.cli``: the ``veil`` program."""

from veil.cli.main import entry

entry()
