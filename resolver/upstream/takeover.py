"""Takeover sync: a top-level node's copy of its secondaries' data, pulled from their change
logs, and the health of each secondary (issue 7 §7; idis.md §1.4 "数据同步" / "应急接管").

Runs in the node's upstream agent process (``resolver.upstream.agent``).  Model: the mirrors'
pull of handle.md §6 — the copy asks each source for the transactions after the last one it
applied and fetches the *current* record of each key they name (a transaction carries no
record); eventual consistency.  The worker side that answers from the copy is
``resolver.core.takeover``; the copy's layout is ``resolver.store.schema.TAKEOVER``.

Contract of ``TakeoverSync(sources, store, identity=, secret=, ...)``:

* ``sources``: the secondaries' REST base URLs (``http://host:port``, no trailing ``/``).
* ``await pull_once()`` — one pull of every source now; ``await pull_due()`` — of those due;
  ``await run()`` — forever, each source every ``interval`` seconds while it answers, every
  ``min(interval, 1 s)`` while it fails.  A pull pages through
  ``GET <source>/api/v1/changes?after=<last applied>&limit=<page_size>`` (Basic credentials of
  ``identity`` / ``secret``: the endpoint is for the source's server admins, so the source
  lists ``identity`` in its ``[node] server_admins``).  Per page: the keys it names are
  collapsed (the last action on a key wins; an import chunk names the identifiers it
  created), each still-existing key is fetched **anonymously** from
  ``GET <source>/api/handles/<key>`` — the copy holds the public view only, what the source
  would tell anyone — (404, and a 400 "not here", delete the copy), and the page is applied
  with its ``next`` as the new last applied id in ONE write transaction
  (``LmdbStore.takeover_apply``, in a thread: a commit waits for the disk).  A page that
  fails half-way applies nothing and is asked again: the copy is idempotent and resumes from
  the last applied id, across restarts too.  ``home`` / ``unhome`` entries add / remove the
  source's prefixes (with the copied prefix handle).
* Health: a pull that gets no HTTP answer (connection refused or reset, timeout) or a gateway's
  502 / 503 / 504 (a proxy in front of a secondary that is gone) is a failure; any other HTTP
  answer, even an error status, means the source is reachable (an error is reported in the
  status and logged once per streak: ``E082``).  A source counts as **unreachable**
  once its attempts have failed, with no success in between, for ``down_after`` seconds
  measured from the first failure — decided at a failed attempt, so with ``down_after > 0``
  at least two attempts failed.  The state is published in the store
  (``LmdbStore.takeover_set_down``) on changes only — that is what the workers read — and
  logged (``E080`` down, ``E081`` back).  A source published as down by an earlier agent
  stays down until it answers again.
* ``status()`` → ``{"enabled", "interval", "down_after", "sources": {url: {"state": "up" |
  "failing" | "down" | "unknown", "unreachable_since", "last_success", "last_applied",
  "prefixes", "error", "pulls", "failures", "changes", "fetched"}}}`` (times: UNIX seconds).
* ``await close()`` closes the HTTP session.  The store stays open: a write may still run in
  its thread when the pull is cancelled, and the agent process ends soon after.
* As a service of the agent (``agent.serve(background=...)``): ``name`` ``"takeover"`` (the key
  of its status in the status file), ``run()`` (closes the session when cancelled).

``NoRecursor`` is the agent's recursor on a node with ``[takeover] sources`` but no
``[upstream] servers``: no worker forwards to it; it answers ``NOT_RESPONSIBLE``.

Limits: the change log carries keys, not records, so a large import costs one GET per created
identifier (``fetch_concurrency`` at a time); a source whose store was rebuilt (change ids
starting again below the last applied) is not detected (handle.md §6's NEED_TO_REDUMP has no
REST counterpart yet).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
import urllib.parse
from typing import Sequence

import aiohttp
import orjson

from resolver.core.request import ResolveResult
from resolver.errors import IdnodeError, Outcome
from resolver.record import Record, pack
from resolver.valuejson import value_from_json

log = logging.getLogger("idnode.takeover")

PAGE_SIZE = 1000  # changes per page (the endpoint allows up to 10,000)
FETCH_CONCURRENCY = 8  # record GETs in flight per source
TIMEOUT = 5.0  # seconds for one HTTP request, connecting included
PROBE_INTERVAL = 1.0  # seconds between attempts while a source fails (at most)
_NA = "0.NA/"
_RECORD_ACTIONS = ("create", "update", "delete")
#: Answers of a reverse proxy whose backend is gone: the source is unreachable.
_GATEWAY_DOWN = frozenset({502, 503, 504})


class _Failed(Exception):
    """No HTTP answer from the source: counts towards "unreachable"."""


class _Refused(Exception):
    """The source answered, but not what a pull needs: reported, not a failure."""


@dataclasses.dataclass(slots=True)
class _Source:
    url: str
    state: str = "unknown"
    last_applied: int = 0
    failing_since: float | None = None  # clock() of the first failure of the streak
    unreachable_since: float | None = None  # wall time of that first failure
    last_success: float | None = None  # wall time
    next_due: float = 0.0
    error: str | None = None
    prefixes: tuple[str, ...] = ()
    pulls: int = 0
    failures: int = 0
    changes: int = 0
    fetched: int = 0


class NoRecursor:
    """The agent's recursor when there is no upstream to recurse to (module docstring)."""

    async def resolve(self, key: str, *, fresh: bool = False) -> ResolveResult:
        return ResolveResult(Outcome.NOT_RESPONSIBLE)

    def status(self) -> dict:
        return {}


class TakeoverSync:
    """Pulls the sources' change logs into the store's takeover copy (module docstring)."""

    name = "takeover"

    def __init__(self, sources: Sequence[str], store, *, identity: str, secret: bytes,
                 interval: float = 10.0, down_after: float = 3.0, enabled: bool = False,
                 session: aiohttp.ClientSession | None = None, page_size: int = PAGE_SIZE,
                 fetch_concurrency: int = FETCH_CONCURRENCY, timeout: float = TIMEOUT,
                 clock=time.monotonic, wall=time.time) -> None:  # fmt: skip
        self.store = store
        self.interval = float(interval)
        self.down_after = float(down_after)
        self.enabled = enabled
        self.page_size = page_size
        self.fetch_concurrency = fetch_concurrency
        self.timeout = timeout
        self.clock, self.wall = clock, wall
        user = urllib.parse.quote(identity, safe="/")  # its own ':' percent-encoded (§7.3)
        self._auth = "Basic " + base64.b64encode(user.encode("utf-8") + b":" + secret).decode()
        self._session = session
        self._own_session = session is None
        down = store.takeover_down()
        owners = store.takeover_prefixes()
        self.sources: dict[str, _Source] = {}
        for url in sources:
            src = _Source(url, last_applied=store.takeover_last(url))
            src.prefixes = tuple(sorted(p.decode("utf-8") for p, s in owners.items() if s == url))
            if url in down:  # published by an earlier agent: down until it answers again
                src.state, src.unreachable_since = "down", down[url] / 1000
                src.failing_since = clock() - self.down_after
            self.sources[url] = src

    # -- scheduling ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Pull each source when due, forever (cancel to stop).  One loop per source: a long
        first copy of one source delays neither the pulls nor the outage detection of another."""
        loops = [asyncio.ensure_future(self._loop(s)) for s in self.sources.values()]
        try:
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self.close()

    async def _loop(self, src: _Source) -> None:
        while True:
            wait = src.next_due - self.clock()
            if wait > 0:
                await asyncio.sleep(min(wait, 1.0))
                continue
            try:
                await self._attempt(src)
            except Exception:  # a bug or a store error must not end the source's pulls
                log.exception("E084 takeover: pulling from %s failed", src.url)
                src.next_due = self.clock() + self.interval

    async def pull_due(self) -> int:
        now = self.clock()
        due = [s for s in self.sources.values() if s.next_due <= now]
        return sum(await asyncio.gather(*(self._attempt(s) for s in due)))

    async def pull_once(self) -> int:
        """One pull of every source now; the number of change-log entries applied."""
        return sum(await asyncio.gather(*(self._attempt(s) for s in self.sources.values())))

    async def _attempt(self, src: _Source) -> int:
        src.pulls += 1
        try:
            applied = await self._pull(src)
        except _Failed as exc:
            await self._failed(src, str(exc))
            return 0
        except _Refused as exc:
            await self._reachable(src, str(exc))
            return 0
        await self._reachable(src, None)
        return applied

    async def _failed(self, src: _Source, reason: str) -> None:
        now = self.clock()
        src.failures += 1
        src.error = reason
        src.next_due = now + min(self.interval, PROBE_INTERVAL)
        if src.failing_since is None:
            src.failing_since, src.unreachable_since = now, self.wall()
        if src.state == "down":
            return
        src.state = "failing"
        if now - src.failing_since >= self.down_after:
            since_ms = int(src.unreachable_since * 1000)
            await asyncio.to_thread(self.store.takeover_set_down, src.url, since_ms)
            src.state = "down"
            what = (f"answering its prefixes ({', '.join(src.prefixes) or 'none copied'}) from "
                    "the copy, non-authoritative" if self.enabled
                    else "takeover is disabled here: not answering for it")  # fmt: skip
            log.warning("E080 takeover: source %s unreachable since %s (%s); %s", src.url,
                        _iso(src.unreachable_since), reason, what)  # fmt: skip

    async def _reachable(self, src: _Source, error: str | None) -> None:
        if error is not None and error != src.error:  # once per streak, not every pull
            log.warning("E082 takeover: pulling from %s: %s", src.url, error)
        src.error = error
        src.next_due = self.clock() + self.interval
        src.last_success = self.wall()
        if src.state == "down":
            await asyncio.to_thread(self.store.takeover_set_down, src.url, None)
            log.warning("E081 takeover: source %s answers again (unreachable since %s); no "
                        "longer answering for it", src.url,
                        _iso(src.unreachable_since))  # fmt: skip
        src.state = "up"
        src.failing_since = src.unreachable_since = None

    # -- one pull ------------------------------------------------------------------------------
    async def _pull(self, src: _Source) -> int:
        applied = 0
        while True:
            doc = await self._get_json(
                f"{src.url}/api/v1/changes?after={src.last_applied}&limit={self.page_size}",
                auth=True)  # fmt: skip
            changes = doc.get("changes") if isinstance(doc, dict) else None
            if not isinstance(changes, list) or not isinstance(doc.get("next"), int):
                raise _Refused("the change log answer is not {changes, next}")
            if not changes:
                return applied
            records, prefixes = _collapse(changes)
            fetched = await self._fetch_all(src, records, prefixes)
            last = doc["next"]
            if last <= src.last_applied:
                raise _Refused(f"the change log went backwards ({last} after {src.last_applied})")
            try:
                await asyncio.to_thread(self.store.takeover_apply, src.url, last,
                                        fetched[0], fetched[1])  # fmt: skip
            except IdnodeError as exc:  # store full, ...: nothing applied, asked again later
                raise _Refused(f"cannot store the copy: {exc.message}") from None
            src.last_applied = last
            src.changes += len(changes)
            applied += len(changes)
            if fetched[1]:
                owners = await asyncio.to_thread(self.store.takeover_prefixes)
                src.prefixes = tuple(sorted(p.decode("utf-8") for p, s in owners.items()
                                            if s == src.url))  # fmt: skip
            if len(changes) < self.page_size:
                return applied

    async def _fetch_all(self, src: _Source, records: dict[str, bool],
                         prefixes: dict[str, bool]) -> tuple[list, list]:  # fmt: skip
        """The current stored bytes (None: gone) of every key whose last action left it."""
        gate = asyncio.Semaphore(self.fetch_concurrency)

        async def one(handle: str, alive: bool):
            if not alive:
                return None
            async with gate:
                src.fetched += 1
                return await self._fetch(src.url, handle)

        rec_keys = list(records)
        pre_keys = list(prefixes)
        blobs = await asyncio.gather(*(one(k, records[k]) for k in rec_keys),
                                     *(one(_NA + p, prefixes[p]) for p in pre_keys))  # fmt: skip
        rec = [(k.encode("utf-8"), b) for k, b in zip(rec_keys, blobs)]
        pre = [(p.encode("utf-8"), b) for p, b in zip(pre_keys, blobs[len(rec_keys) :])]
        return rec, pre

    async def _fetch(self, url: str, handle: str) -> bytes | None:
        """The source's public view of ``handle`` as a stored record; None when it is gone."""
        status, doc = await self._request(f"{url}/api/handles/"
                                          + urllib.parse.quote(handle, safe="/"))  # fmt: skip
        rc = doc.get("responseCode") if isinstance(doc, dict) else None
        if status == 404 or (status == 400 and rc in (100, 301)):
            return None  # deleted, or its prefix is no longer served there
        if status != 200 or rc not in (1, 200):
            raise _Refused(f"GET {handle}: HTTP {status}, responseCode {rc}")
        try:
            values = doc.get("values") or []
            return pack(Record(value_from_json(v) for v in values))
        except (IdnodeError, TypeError, AttributeError) as exc:
            raise _Refused(f"GET {handle}: unusable values: {exc}") from None

    async def _get_json(self, url: str, *, auth: bool = False):
        status, doc = await self._request(url, auth=auth)
        if status != 200:
            msg = doc.get("message") if isinstance(doc, dict) else None
            raise _Refused(f"HTTP {status}" + (f": {msg}" if msg else ""))
        return doc

    async def _request(self, url: str, *, auth: bool = False):
        session = self._client()
        headers = {"Authorization": self._auth} if auth else None
        try:
            async with session.get(url, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if status in _GATEWAY_DOWN:
            raise _Failed(f"HTTP {status} from {url.split('/api/', 1)[0]}")
        try:
            return status, orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _Refused(f"HTTP {status}: the answer is not JSON") from None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.fetch_concurrency * 2),
                cookie_jar=aiohttp.DummyCookieJar(),  # Basic on every request, no session
            )  # fmt: skip
        return self._session

    # -- status, shutdown ----------------------------------------------------------------------
    def status(self) -> dict:
        return {
            "enabled": self.enabled, "interval": self.interval, "down_after": self.down_after,
            "sources": {s.url: {
                "state": s.state, "unreachable_since": s.unreachable_since,
                "last_success": s.last_success, "last_applied": s.last_applied,
                "prefixes": list(s.prefixes), "error": s.error, "pulls": s.pulls,
                "failures": s.failures, "changes": s.changes, "fetched": s.fetched,
            } for s in self.sources.values()},
        }  # fmt: skip

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None


def _collapse(changes: list) -> tuple[dict[str, bool], dict[str, bool]]:
    """Change-log entries (``codec.changes_body`` items), oldest first → the keys they name,
    each with whether its last action left it existing: records, and prefixes (without
    ``0.NA/``)."""
    records: dict[str, bool] = {}
    prefixes: dict[str, bool] = {}
    for c in changes:
        if not isinstance(c, dict):
            raise _Refused("a change-log entry is not an object")
        action, handle = c.get("action"), c.get("handle")
        if action == "import":
            for h in c.get("created") or ():
                records[str(h)] = True
        elif not isinstance(handle, str):
            raise _Refused("a change-log entry without a handle")
        elif action in _RECORD_ACTIONS:
            records.pop(handle, None)  # re-insert: the last action's order
            records[handle] = action != "delete"
        elif action in ("home", "unhome"):
            prefix = handle[len(_NA) :] if handle.upper().startswith(_NA.upper()) else handle
            prefixes[prefix] = action == "home"
    return records, prefixes


def _iso(t: float | None) -> str:
    return "?" if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
