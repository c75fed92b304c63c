"""Single-flight: concurrent requests for the same key share one execution (issue 7 §4).

Owns the de-duplication of in-flight upstream work: while a query for a foreign identifier is
out, every other query for that identifier waits for the same answer instead of sending its
own — one upstream query however many clients ask at once.

Contract of ``await flight.run(key, factory)``:

* No execution in flight for ``key``: ``factory()`` is called once and its awaitable runs in a
  task of its own; the caller waits for it.  One in flight: the caller just waits for it.
* Every waiter gets the same result, or the same exception raised (an exception raised by
  ``factory()`` itself counts as the execution's).
* The key is released as soon as the execution finishes, before any waiter resumes: a call
  made after that runs the work again — nothing is cached here (that is ``AnswerCache``'s job).
* Cancelling a waiter cancels only that waiter.  The shared work goes on for the others, and
  goes on even when every waiter is gone, so the answer it fetches still lands in the cache
  (its own timeouts bound it).  An orphan's exception is not logged as "never retrieved"
  (``asyncio.shield`` marks it retrieved for each cancelled waiter).  ``cancel_all()``
  cancels every execution (shutdown).
* One instance belongs to one event loop.  No locks: everything between awaits is atomic.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Hashable, TypeVar

T = TypeVar("T")


class SingleFlight:
    """Shares one execution per key among concurrent callers (contract above)."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task] = {}
        self.executions = 0  # how many times work was started
        self.joined = 0  # how many callers waited for work someone else started

    def __len__(self) -> int:
        return len(self._tasks)

    def in_flight(self, key: Hashable) -> bool:
        return key in self._tasks

    async def run(self, key: Hashable, factory: Callable[[], Awaitable[T]]) -> T:
        """The result of the one execution of ``factory()`` for ``key`` in flight now."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(_call(factory))
            self._tasks[key] = task
            self.executions += 1
            # Added before any waiter's callback, so it runs first: the key is free again by
            # the time a waiter resumes.
            task.add_done_callback(lambda t, key=key: self._done(key, t))
        else:
            self.joined += 1
        # shield: a cancelled waiter must not cancel the work the others wait for.
        return await asyncio.shield(task)

    def _done(self, key: Hashable, task: asyncio.Task) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    def cancel_all(self) -> int:
        """Cancel every execution in flight (their waiters get ``CancelledError``)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        return len(tasks)

    def stats(self) -> dict[str, int]:
        return {"in_flight": len(self._tasks), "executions": self.executions,
                "joined": self.joined}  # fmt: skip


async def _call(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()
