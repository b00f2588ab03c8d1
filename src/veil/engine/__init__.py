"""The engine of ``veil run``: listing, shards, the driver and the executors (in this process, a local process
pool, Ray) behind one interface (:mod:`veil.engine.executor`)."""

from __future__ import annotations

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
