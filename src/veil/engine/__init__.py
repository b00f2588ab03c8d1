"""The engine of ``veil run``: listing, shards, the driver and the executors (in this process, a local process
pool, Ray) behind one interface (:mod:`veil.engine.executor`).

The names below load on first use (PEP 562): a run in this process does not import the process pool's
multiprocessing, nor a pool run Ray's executor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from veil.system import lazy_exports

if TYPE_CHECKING:
    from veil.engine.driver import (
        RunOptions,
        RunSummary,
        RunTotals,
        audit_key,
        check_destination,
        run,
    )
    from veil.engine.executor import Executor, FatalRunError, Task
    from veil.engine.inline import InlineExecutor
    from veil.engine.listing import Entry, list_inputs
    from veil.engine.local import POOL_RETRIES, LocalPoolExecutor
    from veil.engine.ray import RayExecutor
    from veil.engine.sharding import (
        MIN_SHARD_FILES,
        SHARD_FILES,
        ShardContext,
        ShardResult,
        choose_shard_files,
        process_shard,
        shards,
    )

__all__ = [
    "run",
    "RunOptions",
    "RunSummary",
    "RunTotals",
    "FatalRunError",
    "check_destination",
    "audit_key",
    "Entry",
    "list_inputs",
    "shards",
    "choose_shard_files",
    "process_shard",
    "ShardContext",
    "ShardResult",
    "SHARD_FILES",
    "MIN_SHARD_FILES",
    "POOL_RETRIES",
    "Executor",
    "Task",
    "InlineExecutor",
    "LocalPoolExecutor",
    "RayExecutor",
]

_HOMES = {
    "RunOptions": "driver",
    "RunSummary": "driver",
    "RunTotals": "driver",
    "audit_key": "driver",
    "check_destination": "driver",
    "run": "driver",
    "Executor": "executor",
    "FatalRunError": "executor",
    "Task": "executor",
    "InlineExecutor": "inline",
    "Entry": "listing",
    "list_inputs": "listing",
    "POOL_RETRIES": "local",
    "LocalPoolExecutor": "local",
    "RayExecutor": "ray",
    "MIN_SHARD_FILES": "sharding",
    "SHARD_FILES": "sharding",
    "ShardContext": "sharding",
    "ShardResult": "sharding",
    "choose_shard_files": "sharding",
    "process_shard": "sharding",
    "shards": "sharding",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
