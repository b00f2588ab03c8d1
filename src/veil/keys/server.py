"""The run's :class:`~veil.keys.service.KeyService` served to the processes of a local pool (``veil run
--workers N``), which cannot call the driver's object: counter pseudonyms, one call per shard.

A module of its own so that ``multiprocessing.managers`` is imported only by runs that number values.
"""

from __future__ import annotations

from multiprocessing.managers import BaseManager

__all__ = ["KeyServiceManager", "serve"]

_SERVED: dict[str, object] = {}


class KeyServiceManager(BaseManager):
    """Its process holds the service (inherited by fork, or pickled to it by the forkserver: a process of this
    machine and user) and dies with the driver."""


def _served_key_service() -> object:
    return _SERVED["service"]


def serve(service: object) -> None:
    """Runs in the manager's process before it serves."""
    from veil.system import die_with_parent

    die_with_parent()
    _SERVED["service"] = service


KeyServiceManager.register("key_service", callable=_served_key_service)
