"""Single-flight (resolver/upstream/singleflight.py): one execution per key in flight.

The shared work is held open by an ``asyncio.Event`` until every caller has joined, so the
counts are exact; executions are counted by the work itself, not only by the flight's stats.
"""

from __future__ import annotations

import asyncio
import gc

from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.upstream.singleflight import SingleFlight


def run(coro, limit: float = 5.0):
    async def bounded():
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


class Work:
    """A factory whose executions wait for ``gate`` and are counted."""

    def __init__(self, result=None, error: BaseException | None = None) -> None:
        self.gate = asyncio.Event()
        self.started = 0
        self.finished = 0
        self.result, self.error = result, error

    async def __call__(self):
        self.started += 1
        await self.gate.wait()
        self.finished += 1
        if self.error is not None:
            raise self.error
        return self.result if self.result is not None else object()


async def until(condition) -> None:
    """Let the event loop run until ``condition()`` holds (callers entered, work started)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the event loop never got there")


def entered(flight: SingleFlight, calls: int):
    return lambda: flight.executions + flight.joined >= calls


def test_hundred_callers_share_one_execution():
    async def main():
        flight, work = SingleFlight(), Work()
        callers = [asyncio.create_task(flight.run(b"k", work)) for _ in range(100)]
        await until(lambda: flight.joined == 99 and work.started == 1)
        assert work.started == 1 and flight.in_flight(b"k") and len(flight) == 1
        work.gate.set()
        results = await asyncio.gather(*callers)
        assert work.started == work.finished == 1
        assert len({id(r) for r in results}) == 1  # the very same object for everyone
        assert flight.stats() == {"in_flight": 0, "executions": 1, "joined": 99}

    run(main())


def test_an_exception_reaches_every_caller_and_the_next_call_runs_again():
    async def main():
        boom = LookupError("upstream said no")
        flight, work = SingleFlight(), Work(error=boom)
        callers = [asyncio.create_task(flight.run("k", work)) for _ in range(100)]
        await until(entered(flight, 100))
        work.gate.set()
        outcomes = await asyncio.gather(*callers, return_exceptions=True)
        assert all(o is boom for o in outcomes) and work.started == 1
        assert not flight.in_flight("k")
        again = Work(result="ok")
        again.gate.set()
        assert await flight.run("k", again) == "ok" and again.started == 1

    run(main())


def test_a_factory_that_raises_when_called_is_shared_too():
    async def main():
        flight, calls = SingleFlight(), []

        def factory():
            calls.append(1)
            raise ValueError("bad request")

        outcomes = await asyncio.gather(*(flight.run("k", factory) for _ in range(5)),
                                        return_exceptions=True)  # fmt: skip
        assert len(calls) == 1 and all(isinstance(o, ValueError) for o in outcomes)
        assert len({id(o) for o in outcomes}) == 1 and not flight.in_flight("k")

    run(main())


def test_cancelling_one_waiter_leaves_the_work_to_the_others():
    async def main():
        flight, work = SingleFlight(), Work(result="answer")
        callers = [asyncio.create_task(flight.run("k", work)) for _ in range(10)]
        await until(entered(flight, 10))
        callers[0].cancel()  # the one that started the work
        callers[5].cancel()
        await asyncio.sleep(0)
        work.gate.set()
        outcomes = await asyncio.gather(*callers, return_exceptions=True)
        assert isinstance(outcomes[0], asyncio.CancelledError)
        assert isinstance(outcomes[5], asyncio.CancelledError)
        assert [o for i, o in enumerate(outcomes) if i not in (0, 5)] == ["answer"] * 8
        assert work.started == work.finished == 1

    run(main())


def test_work_outlives_all_its_waiters_and_its_failure_is_not_reported_as_unretrieved():
    async def main():
        loop = asyncio.get_running_loop()
        reported = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        flight, work = SingleFlight(), Work(error=TimeoutError("no reply"))
        callers = [asyncio.create_task(flight.run("k", work)) for _ in range(3)]
        await until(lambda: flight.joined == 2 and work.started == 1)
        for c in callers:
            c.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        assert flight.in_flight("k")  # nobody waits, the work goes on
        work.gate.set()
        for _ in range(10):
            await asyncio.sleep(0)
        assert work.finished == 1 and not flight.in_flight("k")
        gc.collect()  # an unretrieved task exception is reported when the task is collected
        await asyncio.sleep(0)
        assert reported == []

    run(main())


def test_the_key_is_free_before_any_waiter_resumes():
    async def main():
        flight, work = SingleFlight(), Work(result=1)
        seen = []

        async def caller():
            result = await flight.run("k", work)
            seen.append(flight.in_flight("k"))  # first thing after resuming
            return result

        callers = [asyncio.create_task(caller()) for _ in range(3)]
        await until(entered(flight, 3))
        work.gate.set()
        await asyncio.gather(*callers)
        assert seen == [False, False, False]

    run(main())


def test_sequential_calls_each_run():
    async def main():
        flight, count = SingleFlight(), []

        async def factory():
            count.append(1)
            return len(count)

        assert [await flight.run("k", factory) for _ in range(3)] == [1, 2, 3]
        assert flight.stats() == {"in_flight": 0, "executions": 3, "joined": 0}

    run(main())


def test_cancel_all_cancels_the_work_and_its_waiters():
    async def main():
        flight, work = SingleFlight(), Work()
        callers = [asyncio.create_task(flight.run(k, work)) for k in ("a", "a", "b")]
        await until(lambda: entered(flight, 3)() and work.started == 2)
        assert flight.cancel_all() == 2
        outcomes = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
        assert work.finished == 0 and len(flight) == 0

    run(main())


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.integers(0, 6), min_size=1, max_size=40))
def test_one_execution_per_distinct_key_each_caller_gets_its_keys_result(keys):
    async def main():
        flight, gate, started = SingleFlight(), asyncio.Event(), []

        def factory_for(k):
            async def work():
                started.append(k)
                await gate.wait()
                return ("result", k)

            return work

        callers = [asyncio.create_task(flight.run(k, factory_for(k))) for k in keys]
        await until(lambda: entered(flight, len(keys))() and len(started) == len(set(keys)))
        assert len(flight) == len(set(keys))  # different keys are in flight side by side
        gate.set()
        results = await asyncio.gather(*callers)
        assert sorted(started) == sorted(set(keys))
        assert results == [("result", k) for k in keys]

    run(main())

