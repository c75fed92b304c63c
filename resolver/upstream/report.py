"""The periodic statistics report pushed upstream (issue 7 §6; idis.md §1.4: secondary nodes
report statistics to the top-level node).

``StatsReporter`` is an upstream-agent background service (``resolver.upstream.agent``): every
``interval`` seconds it reads the node's counters (schema.STATS) for the hours since the last
delivered report and delivers them — a JSON ``POST`` to ``url`` (``Authorization: Bearer
<token>`` when a token is configured; any 2xx is delivered) and/or a file written into
``directory`` (``idnode-stats-<generated>.json``, written to a temporary name then renamed, so
a collector never reads half a file).  The report::

    {"version": 1, "node": {"role": "secondary", "prefixes": ["88.118", ...],
                            "site": "192.0.2.7:2641"},
     "generated": "2026-11-29T20:14:03Z",
     "from": "2026-11-29T19:00:00Z", "to": "2026-11-29T21:00:00Z",      # [from, to)
     "counters": {"88.118.8": {"2026-11-29T20:00:00Z": {"res.http.ok": 12, "reg.create": 3}}}}

Counters are whole-hour totals (metric names in schema.STATS / ``resolver.core.stats``).  An
hour's figures only grow, and a report repeats every hour since the last delivered one —
the current, unfinished hour and the one before it (a worker flushes its counts a few seconds
late) come again in the next report — so a receiver keeps, per prefix, hour and metric, the
latest figure it got; lost or repeated reports change nothing.  The first hour of the next
report (``meta`` key ``STATE_KEY``: u32 big-endian hour) advances only when every target took
the report; a failed delivery is retried at the next interval with the hours it missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time

import aiohttp
import orjson

from resolver.errors import StoreError

log = logging.getLogger("idnode.upstream")

STATE_KEY = b"stats_report_from"  # meta: the first hour the next report covers
_HOUR = struct.Struct(">I")
#: At most this many hours in one report (a node that could not report for weeks catches up
#: in several reports, oldest first).
MAX_HOURS = 24 * 7
TIMEOUT = 10.0


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class StatsReporter:
    name = "stats_report"

    def __init__(self, store, *, interval: float, url: str = "", directory: str = "",
                 token: str = "", node: dict | None = None, clock=time.time) -> None:  # fmt: skip
        if not url and not directory:
            raise ValueError("a statistics report needs a URL or a directory")
        self.store = store
        self.interval = interval
        self.url = url
        self.directory = directory
        self.token = token
        self.node = node or {}
        self.clock = clock
        self.delivered = 0
        self.failures = 0
        self.last_error = ""
        self.last_delivered: float | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.report_once()

    async def report_once(self) -> bool:
        """Build and deliver one report; True when every target took it."""
        try:
            report, first, last = await asyncio.to_thread(self.build)
            body = orjson.dumps(report)
            if self.directory:
                await asyncio.to_thread(self._write_file, body, report["generated"])
            if self.url:
                await self._post(body)
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError, StoreError,
                _Refused) as exc:  # fmt: skip
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("E091 statistics report not delivered (retried next time): %s",
                        self.last_error)  # fmt: skip
            return False
        current = int(self.clock() // 3600)
        # Caught up: the current hour is still counting, and the hour before may still get a
        # worker's last flush — the next report starts with them again.  Catching up: after
        # the hours sent.
        following = last + 1 if last < current - 1 else max(first, current - 1)
        await asyncio.to_thread(self.store.meta_put, STATE_KEY, _HOUR.pack(following))
        self.delivered += 1
        self.last_delivered = self.clock()
        self.last_error = ""
        return True

    def build(self) -> tuple[dict, int, int]:
        """The report of the hours from the stored first hour (or the current one) to now."""
        now = self.clock()
        current = int(now // 3600)
        stored = self.store.meta_value(STATE_KEY)
        first = _HOUR.unpack(stored)[0] if stored is not None and len(stored) == 4 else current
        first = min(first, current)
        last = min(current, first + MAX_HOURS - 1)
        counters: dict[str, dict[str, dict[str, int]]] = {}
        for prefix, hour, metric, n in self.store.stats(None, first, last):
            by_hour = counters.setdefault(prefix.decode("utf-8", "replace"), {})
            by_hour.setdefault(_iso(hour * 3600), {})[metric.decode("ascii", "replace")] = n
        report = {"version": 1, "node": self.node, "generated": _iso(now),
                  "from": _iso(first * 3600), "to": _iso((last + 1) * 3600),
                  "counters": counters}  # fmt: skip
        return report, first, last

    def _write_file(self, body: bytes, generated: str) -> None:
        name = "idnode-stats-" + generated.replace("-", "").replace(":", "") + ".json"
        path = os.path.join(self.directory, name)
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    async def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(self.url, data=body, headers=headers) as resp:
                if not 200 <= resp.status < 300:
                    raise _Refused(f"{self.url} answered HTTP {resp.status}")

    def status(self) -> dict:
        return {"delivered": self.delivered, "failures": self.failures,
                "last_error": self.last_error, "last_delivered": self.last_delivered,
                "url": self.url, "directory": self.directory}  # fmt: skip


class _Refused(Exception):
    """The report URL answered, but not with 2xx."""
