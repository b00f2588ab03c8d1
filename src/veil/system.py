"""Operating-system helpers shared by the layers that start processes (the engine's pool, the key server)."""

from __future__ import annotations

import os
import signal

__all__ = ["die_with_parent"]


def die_with_parent() -> None:
    """A pool process ends when the process that started it does (Linux ``PR_SET_PDEATHSIG``): a driver killed
    with SIGKILL leaves no worker behind to go on writing into DST while ``--resume`` runs."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the pool's own checks still stop idle workers once the driver is gone
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
