"""The executor of Ray tasks: on a local Ray (``--ray``) or a cluster (``--address``); Ray costs seconds to start
and pays off on a cluster. Ray is imported here (inside functions) and in :mod:`veil.keys.actor` only."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any, Generic, TypeVar

from veil.engine.executor import Executor, FatalRunError, Task
from veil.engine.sharding import ShardContext, ShardResult, process_shard
from veil.keys import Key, KeyedFunctions

__all__ = ["RayExecutor", "connect", "require_ray", "shard_executor"]

R = TypeVar("R")

# The re-identification table written at the end of a run: (table, forbid_under=[SRC, DST]).
ReidWriter = Callable[..., object]


def require_ray() -> ModuleType:
    """The ``ray`` module, or a clear error: Ray is an extra (``veil[ray]``), needed by ``--ray`` and
    ``--address`` only."""
    try:
        import ray
    except ImportError as exc:
        raise FatalRunError("Ray is not installed: --ray and --address need it (pip install 'veil[ray]'); "
                            "without them veil runs on a process pool of this machine") from exc
    return ray


def connect(workers: int, address: str | None) -> None:
    """Starts a local Ray of ``workers`` CPUs, or joins the cluster at ``address``, unless Ray is running."""
    ray = require_ray()

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, namespace="veil")
        else:
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False, namespace="veil")


class RayExecutor(Executor[R], Generic[R]):
    """Tasks as Ray tasks, at most ``max_in_flight`` in flight (default twice the CPUs that run them: this
    machine's ``workers``, or the whole cluster's), results as they finish. ``shared`` are extra arguments
    given to every task after its own (an object reference is resolved by Ray). A task whose worker died is
    retried by Ray (``max_retries``); a task that raises stops the run (:class:`FatalRunError`, or the
    ``OSError`` of a full disk as it is)."""

    def __init__(self, fn: Callable[..., R], workers: int, address: str | None = None, *,
                 shared: tuple[Any, ...] = (), max_in_flight: int = 0, max_retries: int = 3) -> None:
        ray = require_ray()
        connect(workers, address)
        self.mode = "ray-cluster" if address else "ray-local"
        self._task = ray.remote(fn).options(max_retries=max_retries, retry_exceptions=False)
        self._shared = tuple(shared)
        cpus = int(ray.cluster_resources().get("CPU", 1)) if address else workers
        self.limit = max_in_flight or max(2, 2 * max(1, cpus))
        self._in_flight: dict[Any, Task] = {}

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def run(self, tasks: Iterable[Task]) -> Iterator[R]:
        in_flight = self._in_flight
        for task in tasks:
            while len(in_flight) >= self.limit:
                yield from self._collect()
            in_flight[self._task.remote(*task, *self._shared)] = task
        while in_flight:
            yield from self._collect()

    def _collect(self) -> Iterator[R]:
        import ray

        ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=None)
        for ref in ready:
            self._in_flight.pop(ref)
            try:
                result: R = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if hasattr(exc, "cause") else None
                if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise cause from None
                raise FatalRunError(f"a shard failed: {exc}") from None
            yield result


# --- veil run's shards on Ray ----------------------------------------------------------------------------------


def shard_executor(options: Any, ctx: ShardContext, key: Key | None,
                   audit_key: bytes) -> tuple[RayExecutor[ShardResult], ReidWriter | None]:
    """``veil run``'s shards as Ray tasks, with the run's key service as a named actor on this node (none
    without a key); returns the executor and what writes the re-identification table at the end (the actor's
    ``write_reid_table``, or None without a key)."""
    ray = require_ray()

    from veil.keys.actor import get_or_create_actor
    from veil.keys.custodian import CustodianPublicKey

    connect(options.workers, options.address)
    actor = None
    if key is not None:
        actor = get_or_create_actor(
            key.material, ctx.plan_recipe.pseudonym_pattern, ctx.plan_recipe.shift_range,
            name=f"veil-keys-{ctx.run_id}",
            # Custodian mode: the table and its journal are sealed to the custodian's public key.
            seal_to=ctx.seal_to if isinstance(ctx.seal_to, CustodianPublicKey) else None,
        )
        if ctx.reid and options.reid_table:
            ray.get(actor.set_journal.remote(os.path.realpath(options.reid_table)))
            if ctx.plan_recipe.counter is not None:
                ray.get(actor.load_reid.remote(os.path.realpath(options.reid_table)))
    executor: RayExecutor[ShardResult] = RayExecutor(
        _ray_shard, options.workers, options.address, shared=(ray.put(ctx), actor, audit_key),
        max_in_flight=options.max_in_flight,
    )
    if actor is None:
        return executor, None

    def write_reid_table(table: str, forbid_under: list[str]) -> object:
        return ray.get(actor.write_reid_table.remote(table, forbid_under=forbid_under))

    return executor, write_reid_table


def _ray_shard(number: int, entries: list[Any], ctx: ShardContext, actor: Any, audit_key: bytes) -> ShardResult:
    """One shard in a Ray worker: its keyed functions from the actor (once per process), its re-identification
    rows and counter numbers asked of it."""
    from veil.keys.actor import worker_functions
    from veil.keys.service import COUNTER_KIND

    def functions() -> KeyedFunctions | None:
        return worker_functions(actor) if actor is not None else None

    def sink(shard: int, pairs: list[tuple[str, bytes, bytes]]) -> object:
        import ray

        return ray.get(actor.record_reid.remote(pairs, shard))  # journaled before the shard counts as done

    def numbers(shard: int, values: list[bytes]) -> list[bytes]:
        import ray

        counter = ctx.plan_recipe.counter
        assert counter is not None
        result: list[bytes] = ray.get(actor.counter_pseudonyms.remote(COUNTER_KIND, values, counter.prefix,
                                                                       counter.width, counter.suffix, shard))
        return result

    return process_shard(ctx, number, entries, functions, audit_key, sink if actor is not None and ctx.reid else None,
                         numbers if actor is not None else None)
