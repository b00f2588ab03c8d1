"""``python -m veil``: the ``veil`` program."""

from veil.cli.main import entry

entry()
