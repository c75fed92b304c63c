"""One process's resolution counters (issue 7 §6): per front-end, prefix and outcome.

Counting is never a write on the hot path (DESIGN §3): each front-end adds to a plain dict in
memory, and the worker drains the dicts into the store every ``[stats] flush_interval`` seconds
(``resolver.servers.lifecycle``), as ``res.<front-end>.<outcome>`` counters (schema.STATS).

The dict's shape is the native fast paths' ``tally`` contract (``native._hotpath_py``): key
``(prefix, outcome)`` — the normalised prefix as bytes (``88.118.8``, ``0.NA`` for prefix
handles, ``b""`` when the request named no valid identifier) and an ``Outcome`` *value*
(``"ok"``) — value the count.  So the fast paths, which answer without a Python call per
query, add to the very dict the general path adds to, and a request is counted once, by
whichever path answered it.

A front-end counts a resolution when it answers one: Handle OC_RESOLUTION, REST
``GET /api/handles/{handle}``, a DNS question for an identifier's name.  Messages that never
get as far as naming an identifier (bad framing, other op codes, the zone's own names) are not
resolutions and are not counted here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from resolver.errors import Outcome, StoreError

log = logging.getLogger("idnode.stats")

#: The front-ends whose resolutions are counted, as they appear in metric names.
FRONT_ENDS = ("http", "handle", "dns")
#: The tables a worker counts in: one per transport, so that ``/metrics`` can tell UDP from
#: TCP (``resolver.servers.metrics``); each is stored under its front-end's name
#: (``handle_udp`` → ``res.handle.<outcome>``).  ``table("handle")`` / ``table("dns")`` still
#: exist for callers that do not split.
TRANSPORTS = ("http", "handle_udp", "handle_tcp", "dns_udp", "dns_tcp")
#: Metric names: ``res.<front-end>.<outcome value>``, and the upstream agent's
#: ``up.query`` (requests sent upstream for an identifier of that prefix).
RESOLUTION = "res."
UPSTREAM_QUERY = b"up.query"


def count(table: dict, prefix: bytes, outcome: Outcome) -> None:
    """Add one resolution of an identifier under ``prefix`` that ended in ``outcome``."""
    k = (prefix, outcome.value)
    table[k] = table.get(k, 0) + 1


class Tally:
    """The counters of one worker: one table per front-end or transport (``table(name)``).

    ``observe(table name, {outcome value: n})``, if given, is told of every count as it leaves
    the tables (``publish`` or ``drain``), summed over prefixes — the ``/metrics`` request
    counters (``resolver.servers.metrics``).  ``publish()`` empties the tables into a carry
    that the next ``drain()`` returns, so the observer can be fed every second while the store
    is written every ``flush_interval``; nothing is counted twice or lost.
    """

    def __init__(self, observe: Callable[[str, dict[str, int]], None] | None = None) -> None:
        self.tables: dict[str, dict] = {name: {} for name in FRONT_ENDS + TRANSPORTS}
        self.observe = observe
        self.carry: dict[tuple[bytes, int, bytes], int] = {}

    def table(self, frontend: str) -> dict:
        return self.tables[frontend]

    def publish(self, now: float | None = None) -> None:
        """Empty the tables into the carry (in the hour of ``now``), telling the observer."""
        merge(self.carry, self._take(now))

    def drain(self, now: float | None = None) -> dict[tuple[bytes, int, bytes], int]:
        """Everything counted since the last drain as ``{(prefix, hour, metric): n}`` — what
        ``LmdbStore.add_stats`` takes, in the hour of ``now`` (published counts: of their
        ``publish``) — and start again from zero.  Tables are emptied in place: the fast paths
        hold references to them."""
        out, self.carry = self.carry, {}
        merge(out, self._take(now))
        return out

    def _take(self, now: float | None) -> dict[tuple[bytes, int, bytes], int]:
        hour = int(time.time() if now is None else now) // 3600
        out: dict[tuple[bytes, int, bytes], int] = {}
        for name, table in self.tables.items():
            if not table:
                continue
            rows = list(table.items())
            table.clear()
            stored = name.partition("_")[0]  # handle_udp → handle
            seen: dict[str, int] = {}
            for (prefix, outcome), n in rows:
                metric = f"{RESOLUTION}{stored}.{outcome}".encode("ascii")
                out[(prefix, hour, metric)] = out.get((prefix, hour, metric), 0) + n
                seen[outcome] = seen.get(outcome, 0) + n
            if self.observe is not None:
                try:
                    self.observe(name, seen)
                except Exception:  # metrics must never cost the statistics their counts
                    log.exception("E120 resolution counts not passed to the metrics")
        return out


def merge(into: dict, counts: dict) -> None:
    """Add ``counts`` (a ``drain`` result) back into ``into`` (one): a flush that failed keeps
    its counts for the next."""
    for k, n in counts.items():
        into[k] = into.get(k, 0) + n


class Flusher:
    """Moves counts from memory into the store every ``interval`` seconds.

    ``drain()`` returns ``{(prefix, hour, metric): n}`` and forgets them (``Tally.drain``);
    the flusher adds them with ``store.add_stats`` in a thread, so the event loop never waits
    for a commit.  Counts whose write failed (a full store) are kept and tried again with the
    next flush, and the process's last ``flush_now()`` (at shutdown) writes what is left.
    Also an upstream-agent background service (``name``, ``run()``, ``status()``).
    """

    name = "stats"

    def __init__(self, store, drain, interval: float) -> None:
        self.store = store
        self.drain = drain
        self.interval = interval
        self.pending: dict = {}
        self.flushed = 0
        self.failures = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            counts = self._take()  # here, in the loop's thread: the tables are not thread-safe
            if counts:
                self._done(counts, await asyncio.to_thread(self._write, counts))

    def flush_now(self) -> None:
        """Drain and write now (blocking; from the thread that counts), never raising for a
        store failure."""
        counts = self._take()
        if counts:
            self._done(counts, self._write(counts))

    def close(self) -> None:
        """At shutdown (upstream-agent service protocol): write what is left."""
        self.flush_now()

    def _take(self) -> dict:
        counts, self.pending = self.pending, {}
        merge(counts, self.drain())
        return counts

    def _write(self, counts: dict) -> bool:
        try:
            self.store.add_stats(counts)
        except StoreError as exc:
            log.error("E090 statistics not written (kept for the next flush): %s", exc)
            return False
        return True

    def _done(self, counts: dict, written: bool) -> None:
        if written:
            self.flushed += sum(counts.values())
        else:
            self.failures += 1
            merge(self.pending, counts)

    def status(self) -> dict:
        return {"flushed": self.flushed, "pending": sum(self.pending.values()),
                "failures": self.failures}  # fmt: skip
