"""The executor of this machine's worker processes (``--workers N``): a process pool started by fork (or the
forkserver in a threaded caller), its workers dying with the driver, a worker that died costing only a rerun."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from veil.engine.executor import Executor, FatalRunError, Task
from veil.engine.sharding import ShardContext, ShardResult, process_shard, service_numbers
from veil.system import LazyLogger, die_with_parent

if TYPE_CHECKING:
    from veil.keys.service import WorkerKeys

__all__ = ["LocalPoolExecutor", "POOL_RETRIES", "shard_executor"]

log = LazyLogger(__name__)

R = TypeVar("R")

POOL_RETRIES = 3  # a shard whose worker process died is run again this many times before the run stops
_STOP_ROUNDS = 3  # SIGTERMs a stopping pool's workers get before SIGKILL ...
_STOP_WAIT = 1.0  # ... each followed by this long a wait for them to exit (seconds)


def _pool_context() -> BaseContext:
    """``fork`` when this process runs no other Python thread and no Ray (the workers start in milliseconds,
    already holding the imported modules); else ``forkserver``, whose clean server process makes forking safe
    in a threaded caller (a notebook, a service) at the price of one interpreter start."""
    import multiprocessing
    import sys
    import threading

    ray_module = sys.modules.get("ray")
    ray_running = ray_module is not None and ray_module.is_initialized()
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1 and not ray_running:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["veil.engine"])
    return context


class WorkerStopped(SystemExit):
    """Raised in a pool worker by SIGTERM (:meth:`LocalPoolExecutor.stop`): the write in progress removes its
    partial output on the way out, as on any error, so a stopped run leaves only whole outputs."""


def _stopped(signum: int, frame: Any) -> None:
    raise WorkerStopped(128 + signum)


def _start_worker(initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> None:
    """Runs once in each pool process: it ends with the driver (a driver killed with SIGKILL leaves no worker
    writing into DST while ``--resume`` runs), stops cleanly on SIGTERM, then the executor's own initializer."""
    die_with_parent()
    signal.signal(signal.SIGTERM, _stopped)
    if initializer is not None:
        initializer(*initargs)


class LocalPoolExecutor(Executor[R], Generic[R]):
    """Tasks on ``workers`` processes of this machine, at most ``max_in_flight`` (default twice the workers) in
    flight, results as they finish.

    A worker process that dies (killed, out of memory) breaks the pool: a new pool is made and the tasks that
    were in flight are run again one at a time (each output is a pure function of its input, so a redone task
    writes the same bytes; alone, a task that kills its worker again is known for certain and the others are
    not blamed); a task that has killed its worker :data:`POOL_RETRIES` times raises :class:`FatalRunError`.
    ``on_close`` runs when the executor is closed or stopped (a service the workers used)."""

    mode = "local-pool"

    def __init__(self, fn: Callable[..., R], workers: int, *, initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = (), context: BaseContext | None = None, max_in_flight: int = 0,
                 on_close: Callable[[], object] | None = None) -> None:
        self._fn = fn
        self._workers = max(1, workers)
        self._initargs = (initializer, initargs)
        self._context = context if context is not None else _pool_context()
        self.limit = max_in_flight or 2 * self._workers
        self._on_close = on_close
        self._in_flight: dict[Future[R], Task] = {}
        self._pool: ProcessPoolExecutor | None = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self._workers, mp_context=self._context, initializer=_start_worker,
                                   initargs=self._initargs)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _submit(self, task: Task) -> Future[R]:
        assert self._pool is not None, "the executor is closed"
        return self._pool.submit(self._fn, *task)

    def run(self, tasks: Iterable[Task]) -> Iterator[R]:
        in_flight = self._in_flight
        try:
            for task in tasks:
                while len(in_flight) >= self.limit:
                    yield from self._collect()
                try:
                    in_flight[self._submit(task)] = task
                except BrokenProcessPool:
                    # A worker died since the last collect: this task and those in flight are run again.
                    yield from self._collect(unsubmitted=task)
            while in_flight:
                yield from self._collect()
        except BaseException:
            self.stop()  # a fatal error or an interrupt: stop the workers now, their tasks are redone on resume
            raise

    def _collect(self, unsubmitted: Task | None = None) -> Iterator[R]:
        """Results of the tasks that finished; with ``unsubmitted`` (refused by a broken pool), every task in
        flight is waited for (on a broken pool they all end) and the broken ones rerun with it."""
        until = FIRST_COMPLETED if unsubmitted is None else ALL_COMPLETED
        finished, _ = wait(list(self._in_flight), return_when=until)
        broken: list[Task] = [] if unsubmitted is None else [unsubmitted]
        for future in finished:
            task = self._in_flight.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool:
                broken.append(task)
                continue
            yield result
        if broken:
            # Every task still in flight ran on the broken pool too.
            broken.extend(self._in_flight.values())
            self._in_flight.clear()
            yield from self._isolate(broken)

    def _renew(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def _isolate(self, broken: list[Task]) -> Iterator[R]:
        """A broken pool fails every task in flight: rerun them one at a time on fresh pools."""
        for task in sorted(broken, key=lambda item: item[0]):
            for attempt in range(1, POOL_RETRIES + 1):
                self._renew()
                log.warning("shard %d: a worker process died; running it again alone (try %d)", task[0], attempt)
                try:
                    result = self._submit(task).result()
                except BrokenProcessPool:
                    continue
                yield result
                break
            else:
                raise FatalRunError(f"shard {task[0]}: its worker process died on each of {POOL_RETRIES} tries "
                                    "(out of memory? a crash on one of its files?)")
        self._renew()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        try:
            if pool is not None:
                pool.shutdown(wait=True)
        finally:
            self._finish()

    def stop(self) -> None:
        """Cancels what has not started and stops the pool's worker processes: SIGTERM first, a few times (each
        cuts short the task a worker is in, whose write in progress removes its partial output; a worker waiting
        for work exits), then SIGKILL for any still alive (a task cut short by that leaves at most a partial
        output, which its rerun replaces)."""
        pool, self._pool = self._pool, None
        try:
            if pool is not None:
                processes = list((getattr(pool, "_processes", None) or {}).values())
                pool.shutdown(wait=False, cancel_futures=True)
                for _ in range(_STOP_ROUNDS):
                    alive = [process for process in processes if process.is_alive()]
                    if not alive:
                        break
                    for process in alive:
                        process.terminate()
                    for process in alive:
                        process.join(timeout=_STOP_WAIT)
                for process in processes:
                    if process.is_alive():
                        process.kill()
                for process in processes:
                    process.join(timeout=5)
        finally:
            self._in_flight.clear()
            self._finish()

    def _finish(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


# --- veil run's shards on the pool -----------------------------------------------------------------------------

_POOL_STATE: dict[str, Any] = {}


def _pool_init(ctx: ShardContext, worker_keys: WorkerKeys | None, audit_key: bytes, sealer: object,
               journal: str | None, key_service: tuple[Any, bytes] | None = None) -> None:
    """Runs once in each pool process: the run's context and the worker sub-keys (never the master key), and
    where the run keeps a re-identification table, the journal folder and the sub-key that seals its parts;
    with counter pseudonyms, a proxy of the key service (its address and authentication key)."""
    from veil.keys.service import functions_from_worker_keys

    _POOL_STATE["ctx"] = ctx
    _POOL_STATE["functions"] = functions_from_worker_keys(worker_keys) if worker_keys is not None else None
    _POOL_STATE["audit_key"] = audit_key
    _POOL_STATE["sealer"] = sealer
    _POOL_STATE["journal"] = journal
    _POOL_STATE["numbers"] = None
    if key_service is not None:
        address, authkey = key_service
        from veil.keys.server import KeyServiceManager

        manager = KeyServiceManager(address=address, authkey=authkey)
        manager.connect()
        _POOL_STATE["numbers"] = service_numbers(manager.key_service(), ctx.plan_recipe.counter)  # type: ignore[attr-defined]


def _pool_shard(number: int, entries: list[Any]) -> ShardResult:
    """One shard in a pool process; its re-identification rows are sealed into the journal by this process,
    before its audit part (the driver merges the journal into the table at the end)."""
    from veil.keys.reid import write_reid_part

    ctx: ShardContext = _POOL_STATE["ctx"]
    functions = _POOL_STATE["functions"]
    sealer, journal = _POOL_STATE["sealer"], _POOL_STATE["journal"]

    def sink(shard: int, pairs: list[tuple[str, bytes, bytes]]) -> None:
        write_reid_part(journal, shard, pairs, sealer)

    return process_shard(ctx, number, entries, lambda: functions, _POOL_STATE["audit_key"],
                         sink if ctx.reid and journal is not None else None, _POOL_STATE["numbers"])


def shard_executor(options: Any, ctx: ShardContext, service: Any, audit_key: bytes) -> LocalPoolExecutor[ShardResult]:
    """``veil run``'s shards on ``options.workers`` processes of this machine. Each worker gets the run's
    context, the worker sub-keys and, where the run keeps a re-identification table, the journal and its
    sealing sub-key; with counter pseudonyms, the key service is served to them by a manager process started
    before the pool (and shut down with it)."""
    from veil.keys.reid import journal_dir

    worker_keys = service.worker_keys() if service is not None else None
    sealer = service.reid_sealer() if service is not None and ctx.reid else None
    journal = str(journal_dir(os.path.realpath(options.reid_table))) if sealer is not None else None
    context = _pool_context()
    manager = None
    served: tuple[Any, bytes] | None = None
    if ctx.plan_recipe.counter is not None:
        if service is None:
            raise FatalRunError("counter pseudonyms need the run's key service")
        # Started before the pool; the service it holds has the journal set and the earlier numbers loaded.
        authkey = os.urandom(32)
        from veil.keys.server import KeyServiceManager, serve

        manager = KeyServiceManager(authkey=authkey, ctx=context)
        manager.start(serve, (service,))
        served = (manager.address, authkey)

    def shutdown() -> None:
        # A closure over the manager itself: its process is shut down when the manager object is collected.
        if manager is not None:
            manager.shutdown()

    try:
        return LocalPoolExecutor(_pool_shard, options.workers, initializer=_pool_init,
                                 initargs=(ctx, worker_keys, audit_key, sealer, journal, served), context=context,
                                 max_in_flight=options.max_in_flight, on_close=shutdown)
    except BaseException:
        shutdown()
        raise
