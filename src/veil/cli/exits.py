"""The exit codes of the ``veil`` program, one table for every verb."""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_FATAL", "EXIT_USAGE", "EXIT_QUARANTINED", "EXIT_FINDINGS", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_FATAL = 1  # a typed veil error, or an input the verb cannot work on
EXIT_USAGE = 2  # as argparse: options that do not go together
EXIT_QUARANTINED = 3  # the run finished, but some inputs were refused (listed in the audit)
EXIT_FINDINGS = 4  # `veil verify` found a leak or a broken reference
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
