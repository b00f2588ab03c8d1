"""The executor contract: how the engine runs one task function over a stream of tasks, wherever the work goes
(this process, a pool of processes on this machine, Ray tasks), as Ray Data's ``executor.py`` states its own.

The contract every executor keeps:

- **A task** is a tuple of positional arguments for the executor's task function (given when the executor is
  made). Its first item is the task's number (a shard's), which names it in messages. Outside this process
  tasks, the function and results are pickled, so they are plain data.
- **Order**: :meth:`Executor.run` pulls tasks lazily from its iterable, keeps at most ``limit`` in flight (a
  lazy listing stays lazy) and yields each result as its task finishes: in completion order, not submission
  order (in this process the two are the same).
- **Failure**: a task that raises stops the run: the error comes out of :meth:`Executor.run` (an ``OSError``
  as it is, so a full disk stays one; an error inside a Ray task as :class:`FatalRunError`, or its ``OSError``
  cause for a full disk), and leaving the ``with`` block stops what is still in flight. A task whose worker
  process died is retried: alone on a fresh pool (:data:`~veil.engine.local.POOL_RETRIES` times), or by Ray
  (``max_retries``); one that keeps killing its worker raises :class:`FatalRunError`. Tasks may therefore run
  more than once, and must be idempotent (every output is a pure function of its input).
- **Lifetime**: an executor is a context manager; leaving it normally waits for its workers and releases them,
  leaving it on an error stops them at once (a stopped task leaves at most a temporary file).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

from veil.errors import VeilError

__all__ = ["Executor", "FatalRunError", "Task"]

Task = tuple[Any, ...]  # the task function's positional arguments; the first is the task's number
R = TypeVar("R")


class FatalRunError(VeilError):
    """A run that cannot go on (unwritable DST, disk full, a shard that keeps failing)."""


class Executor(ABC, Generic[R]):
    """Runs one task function over a stream of tasks (see the module docstring for the contract)."""

    mode: str = ""  # how the work runs, as a run's summary and manifest name it ("in-process", "local-pool", ...)
    limit: int = 1  # tasks in flight at most

    @abstractmethod
    def run(self, tasks: Iterable[Task]) -> Iterator[R]:
        """Runs every task; yields each result as its task finishes."""

    @property
    def in_flight(self) -> int | None:
        """Tasks submitted and not yet finished; None where tasks run one at a time in this process."""
        return None

    def close(self) -> None:
        """After a complete run: waits for the workers and releases them."""

    def stop(self) -> None:
        """After an error or an interrupt: stops the workers now (their tasks are redone on resume)."""
        self.close()

    def __enter__(self) -> Executor[R]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.stop()
