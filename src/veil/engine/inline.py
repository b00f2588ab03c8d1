"""The executor of this process (``--workers 1``, or a job of one shard): each task run as it is pulled, in order,
with nothing to start or pickle."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from veil.engine.executor import Executor, Task
from veil.engine.sharding import ShardContext, ShardResult, process_shard, service_numbers
from veil.keys import KeyedFunctions

__all__ = ["InlineExecutor", "shard_executor"]

R = TypeVar("R")


class InlineExecutor(Executor[R], Generic[R]):
    """Runs each task in this process as it is pulled: results in task order, one task in flight; an error
    comes out of :meth:`run` as the task raised it."""

    mode = "in-process"

    def __init__(self, fn: Callable[..., R]) -> None:
        self._fn = fn

    def run(self, tasks: Iterable[Task]) -> Iterator[R]:
        fn = self._fn
        for task in tasks:
            yield fn(*task)


def shard_executor(ctx: ShardContext, service: Any, audit_key: bytes) -> InlineExecutor[ShardResult]:
    """``veil run``'s shards in this process: the keyed functions built once from the run's key service
    (``service``, None without a key), its re-identification rows and counter numbers asked of it directly."""
    functions = _local_functions(service)
    sink = (lambda n, pairs: service.record_reid(pairs, n)) if service is not None else None
    counter = ctx.plan_recipe.counter
    numbers = service_numbers(service, counter) if counter is not None else None

    def task(number: int, entries: list[Any]) -> ShardResult:
        return process_shard(ctx, number, entries, lambda: functions, audit_key, sink, numbers)

    return InlineExecutor(task)


def _local_functions(service: Any) -> KeyedFunctions | None:
    from veil.keys.service import functions_from_worker_keys

    if service is None:
        return None
    return functions_from_worker_keys(service.worker_keys())
