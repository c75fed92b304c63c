"""Recursive resolution of foreign identifiers through the top-level nodes (issue 7 §3–5).

Owns the walk from an identifier to its answer: locate the site serving the identifier's
prefix, ask that site's responsible server, cache what comes back; and the failure handling
around it — failover between top-level nodes, serve-stale, the recursion limit.  The pieces it
drives are sans-IO and live beside it: ``AnswerCache`` (freshness, negatives, site info,
stale window), ``SingleFlight`` (one upstream query per key), ``UpstreamHealth`` (up/down,
order, probes), ``sites`` (server by hash); the I/O is ``HandleClient``'s.  One ``Recursor``
lives in one process and one event loop (the node's upstream agent).

Contract of ``await Recursor.resolve(text) -> ResolveResult``
============================================================

``text`` is an identifier (invalid → ``InvalidIdentifier`` raised).  Answers are cached per
storage key (``Identifier.key``: case-folded unless ``case_sensitive``), so ``88.119.5/x`` and
``88.119.5/X`` share one entry and one flight.

1. Fresh cache entry → answered from it (``OK`` with the values, TTL = seconds left, or
   ``NOT_FOUND`` for a cached negative); no upstream traffic.
2. Otherwise one execution per key (single-flight) runs the resolution below; every
   concurrent caller gets its result.
3. Locating the site (handle.md §4 items 2–4).  Cached site info of the identifier's prefix
   is used while fresh.  Else ``0.NA/<prefix>`` is resolved at the top-level upstreams, in
   ``health.order(now)`` order, asking for ``HS_SITE``, ``HS_SITE.6`` and ``HS_SERV`` (the
   reference ``buildPrefixResolutionRequest`` types less ``HS_NAMESPACE``).  Per upstream
   answer:

   * RC 1 → its ``HS_SITE``/``HS_SITE.6`` values are the sites; with none, its ``HS_SERV``
     value names a service handle, resolved (recursively, as any identifier) for its
     ``HS_SITE`` values.  The sites are cached under the prefix for the smallest TTL of the
     values used, with the first site's serial (``AnswerCache.put_site``).
   * RC 303 (prefix referral) / RC 302 (service referral) → the referral's ``HS_SITE*``
     values (or, without any, its ``HS_SERV*`` value or handle, resolved as above) are the
     sites to send the *same* query to; their answers are read by these same rules.
   * RC 301 → that upstream does not know the prefix: the next one is asked at once.
   * no usable reply (``UpstreamUnavailable``) or any other code → recorded as a failure (a
     top-level's in ``health``), the next one is asked at once.

   When all are exhausted: ``NOT_RESPONSIBLE`` if any said 301 (or 100 / no site values for
   the prefix), else ``UPSTREAM_UNAVAILABLE``.  Stale site info is used when every
   top-level fails.
4. Asking the site: sites in order, primary sites first; in each, the server chosen by
   ``sites.select_server`` (handle.md §2.4 hash) over its query interfaces — UDP then TCP on
   one port when they share it, else UDP then TCP separately.  Every request sets RD (request
   digest), so the reply must carry the digest of *our* request (the connected UDP socket
   already drops datagrams from other addresses/ports) and the RC 1 body must name the
   identifier asked.  RC 1 → ``OK`` with the public values only (none → ``VALUES_NOT_FOUND``),
   RC 100 → ``NOT_FOUND``, RC 200 → ``VALUES_NOT_FOUND``, 302/303 → followed as above,
   RC 301/300 from a server found through *cached* site info → the site info is dropped and
   the prefix located again once; otherwise the next site; nothing left → ``NOT_RESPONSIBLE``
   or ``UPSTREAM_UNAVAILABLE`` as in 3.
5. Recursion limit: every referral followed (302, 303, an ``HS_SERV`` indirection, a
   re-location after 301) is one step of one resolution; step ``recursion_limit + 1`` ends it
   with ``RECURSION_LIMIT`` (handle.md §4 item 3: RC 6).  A referral loop therefore ends after
   ``recursion_limit + 1`` queries.
6. Caching the result (reliability.md §A3: only the values of the identifier asked):
   ``OK`` → ``cache.put`` (public values, by value TTL); ``NOT_FOUND`` → ``put_negative``
   (capped); ``VALUES_NOT_FOUND`` clears the key; failures leave the cache as it was.

Serve-stale (RFC 8767; reliability.md §A4).  With a *stale* entry for the key: if a refresh is
in flight it is joined; else, if ``cache.refresh_allowed`` (one refresh per key per 30 s), one
is started; the caller waits at most ``response_timer`` (1.8 s, RFC 8767 §5) and then answers
the stale entry (TTL 30 s) while the refresh goes on in the background and lands in the cache.
A refresh ending in ``UPSTREAM_UNAVAILABLE`` or ``RECURSION_LIMIT`` also answers the stale
entry; any other result (a new answer, an authoritative ``NOT_FOUND``) is the answer.  No
refresh allowed and none in flight → the stale entry at once, no upstream traffic.

``counters``: ``upstream_queries`` (requests sent to any server, probes included),
``upstream_failures`` (of those, no usable reply), ``referrals`` (steps of 5),
``cache_hits`` / ``negative_hits`` (fresh answers from the cache), ``stale_served``,
``singleflight_joined`` (callers that waited for a flight another started), ``probes``,
``fresh`` (requests with AT: ``resolve(key, fresh=True)`` reads no cache — neither the answer
nor the prefix's site info — asks primary sites only, sends AT itself (RFC 3652 §2.2.2.3), and
caches what it gets; concurrent AT requests for one key share one flight);
``prefix_queries`` the requests sent for identifiers of each prefix (the statistics' ``up.query``,
drained by ``drain_prefix_queries``).
``status()`` adds the health of every top-level upstream (keyed ``host:port``) and
``cache.stats()``.  ``probe_due()`` probes the down upstreams that are due (OC_GET_SITE_INFO,
any reply = alive) — the agent's background prober calls it every ``next_probe()`` seconds.
``close()`` cancels the resolutions in flight (shutdown).
"""

from __future__ import annotations

import asyncio
import time
from typing import Sequence

from resolver.core.request import ResolveResult
from resolver.errors import (
    HandleNotFound, IdnodeError, InvalidIdentifier, InvalidValue, NotResponsible, Outcome,
)  # fmt: skip
from resolver.identifier import Identifier
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import Message, ReferralResponse, ResolutionResponse
from resolver.upstream.cache import CLIENT_RESPONSE_TIMER, AnswerCache, answer_ttl
from resolver.upstream.client import DEFAULT_FLAGS, HandleClient, UpstreamUnavailable
from resolver.upstream.health import UpstreamHealth
from resolver.upstream.singleflight import SingleFlight
from resolver.upstream.sites import PROTO_TCP, PROTO_UDP, query_interface, select_server
from resolver.values import HandleValue, SiteInfo

#: Types asked for in a prefix-handle query (reference ``buildPrefixResolutionRequest``).
PREFIX_QUERY_TYPES = ("HS_SITE", "HS_SITE.6", "HS_SERV")
#: Values that are a site to ask: in an answer, and (with the .PREFIX forms) in a referral.
SITE_TYPES = ("HS_SITE", "HS_SITE.6")
REFERRAL_SITE_TYPES = SITE_TYPES + ("HS_SITE.PREFIX", "HS_NA_DELEGATE")
#: Values that name a service handle whose HS_SITE values are the sites.
SERVICE_TYPES = ("HS_SERV", "HS_SERV.PREFIX")
#: RFC 8767 §5: these results of a refresh fall back to the stale entry.
STALE_ON = frozenset({Outcome.UPSTREAM_UNAVAILABLE, Outcome.RECURSION_LIMIT})
#: Cache cap on positive TTLs when the caller gives no cache (the hdl.handle.net proxy's 24 h).
DEFAULT_MAX_TTL = 86400
#: Serial in a request header: "no site info known"; a reply echoing it says nothing.
_NO_SERIAL = 0xFFFF

_COUNTERS = ("upstream_queries", "upstream_failures", "referrals", "cache_hits",
             "negative_hits", "stale_served", "singleflight_joined", "probes",
             "fresh")  # fmt: skip


def default_client() -> HandleClient:
    """Short per-try budgets: a silent server costs ≤ 1.75 s (0.25 + 0.5 s of UDP, 1 s of
    TCP), so failover and the 1.8 s stale timer are not eaten by one dead node.  No REC flag:
    this node does the recursion itself (handle.md §4), and a peer that honoured REC could
    send the query back to us — two nodes recursing for each other would loop."""
    flags = DEFAULT_FLAGS & ~C.FLAG_RECURSIVE
    return HandleClient(udp_retry=(0.25, 0.5), tcp_timeout=1.0, total_timeout=2.0, flags=flags)


class RecursionLimitExceeded(IdnodeError):
    """Too many referrals"""

    outcome = Outcome.RECURSION_LIMIT


class _Budget:
    """Referral steps of one resolution (shared by its nested look-ups)."""

    __slots__ = ("limit", "steps", "sent", "authoritative")

    def __init__(self, limit: int) -> None:
        self.limit, self.steps, self.sent, self.authoritative = limit, 0, 0, False

    def step(self, what: str) -> None:
        self.steps += 1
        if self.steps > self.limit:
            raise RecursionLimitExceeded(f"more than {self.limit} referrals ({what})")


def _name(server: tuple[str, int]) -> str:
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _typed(values: Sequence[HandleValue], types: Sequence[str]) -> list[HandleValue]:
    return [v for v in values if any(v.has_type(t) for t in types)]


def _sites_in(values: Sequence[HandleValue], types: Sequence[str]) -> list[tuple[SiteInfo, int]]:
    """The decodable site values among ``values`` as (site, index in values), primary first
    (stable otherwise).  A value that does not decode is skipped, not fatal."""
    out = []
    for i, v in enumerate(values):
        if any(v.has_type(t) for t in types):
            try:
                out.append((SiteInfo.from_bytes(v.data), i))
            except InvalidValue:
                continue
    out.sort(key=lambda si: not si[0].primary)
    return out


class _Target:
    """One server to send a request to: (protocol, port) tries in order; ``upstream``: the
    configured top-level it is (health is recorded), or None for a server of a site."""

    __slots__ = ("host", "tries", "upstream", "site")

    def __init__(self, host: str, tries: list[tuple[str, int]], upstream=None,
                 site: SiteInfo | None = None) -> None:  # fmt: skip
        self.host, self.tries, self.upstream, self.site = host, tries, upstream, site

    def __str__(self) -> str:
        return _name((self.host, self.tries[0][1]))


def _site_target(site: SiteInfo, handle: str) -> _Target | None:
    """The responsible server of ``site`` for ``handle`` and its query interfaces (UDP then
    TCP); None when the site has no usable server."""
    try:
        server = select_server(site, handle)
    except InvalidValue:
        return None
    udp = query_interface(server, PROTO_UDP)
    tcp = query_interface(server, PROTO_TCP)
    if udp is not None and tcp is not None and udp.port == tcp.port:
        tries = [("auto", udp.port)]
    else:
        tries = [(p, i.port) for p, i in (("udp", udp), ("tcp", tcp)) if i is not None]
    return _Target(server.address_text, tries, None, site) if tries else None


class Recursor:
    """Resolves foreign identifiers through the top-level ``upstreams`` (contract above)."""

    def __init__(self, upstreams: Sequence[tuple[str, int]], *, client: HandleClient | None = None,
                 cache: AnswerCache | None = None, health: UpstreamHealth | None = None,
                 flight: SingleFlight | None = None, recursion_limit: int = 10,
                 response_timer: float = CLIENT_RESPONSE_TIMER, clock=time.monotonic,
                 case_sensitive: bool = False) -> None:  # fmt: skip
        self.upstreams = tuple((str(h), int(p)) for h, p in upstreams)
        if not self.upstreams:
            raise ValueError("a recursor needs at least one top-level upstream")
        if recursion_limit < 0:
            raise ValueError(f"recursion_limit must be ≥ 0, not {recursion_limit}")
        if not response_timer > 0:
            raise ValueError(f"response_timer must be > 0, not {response_timer}")
        self.client = client or default_client()
        self.cache = cache if cache is not None else AnswerCache(DEFAULT_MAX_TTL)
        self.health = health if health is not None else UpstreamHealth(self.upstreams)
        if set(self.health.upstreams) != set(self.upstreams):
            raise ValueError("the health tracker must follow exactly the configured upstreams")
        self.flight = flight if flight is not None else SingleFlight()
        self.recursion_limit = recursion_limit
        self.response_timer = response_timer
        self.clock = clock
        self.case_sensitive = case_sensitive
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        #: requests sent upstream per prefix of the identifier resolved (probes not included),
        #: since the last ``drain_prefix_queries``: the node's ``up.query`` statistics
        self.prefix_queries: dict[bytes, int] = {}
        self._running: set[asyncio.Task] = set()  # the flights' tasks, for close()

    # -- the entry point -----------------------------------------------------------------------
    async def resolve(self, key: str, *, fresh: bool = False) -> ResolveResult:
        ident = Identifier.parse(key, case_sensitive=self.case_sensitive)
        if fresh:  # AT (RFC 3652 §2.2.2.3): no cached answer; asked with AT, then cached
            self.counters["fresh"] += 1
            return await self.flight.run(b"AT\0" + ident.key,
                                         lambda: self._fetch(ident, authoritative=True))
        now = self.clock()
        entry = self.cache.get(ident.key, now)
        if entry is None:
            return await self._shared(ident)
        if entry.fresh:
            if entry.negative:
                self.counters["negative_hits"] += 1
                return ResolveResult(Outcome.NOT_FOUND)
            self.counters["cache_hits"] += 1
            return ResolveResult(Outcome.OK, entry.values_for_client())
        # Stale: refresh (shared, gated) but answer within the client response timer.
        if self.flight.in_flight(ident.key) or self.cache.refresh_allowed(ident.key, now):
            try:
                async with asyncio.timeout(self.response_timer):
                    result = await self._shared(ident)
            except TimeoutError:  # the refresh goes on in its own task
                return self._stale(entry)
            if result.outcome not in STALE_ON:
                return result
        return self._stale(entry)

    def _stale(self, entry) -> ResolveResult:
        self.counters["stale_served"] += 1
        self.cache.note_stale_served()
        if entry.negative:
            return ResolveResult(Outcome.NOT_FOUND)
        return ResolveResult(Outcome.OK, entry.values_for_client())

    def _shared(self, ident: Identifier):
        if self.flight.in_flight(ident.key):
            self.counters["singleflight_joined"] += 1
        return self.flight.run(ident.key, lambda: self._fetch(ident))

    async def _fetch(self, ident: Identifier, *, authoritative: bool = False) -> ResolveResult:
        """One resolution from upstream; its result is cached (rule 6) and returned.
        ``authoritative``: the identifier itself is asked with AT (its site's primary)."""
        budget = _Budget(self.recursion_limit)
        budget.authoritative = authoritative
        task = asyncio.current_task()
        self._running.add(task)
        try:
            if ident.is_prefix_handle:  # a prefix handle lives at the top-level nodes
                reply, _ = await self._ask(ident.key.decode("utf-8"), (), budget, None)
            else:
                reply = await self._ask_identifier(ident, budget)
        except IdnodeError as exc:
            return ResolveResult(exc.outcome, message=exc.message)
        finally:
            self._running.discard(task)
            if budget.sent:
                k = ident.prefix_key
                self.prefix_queries[k] = self.prefix_queries.get(k, 0) + budget.sent
        now, wall = self.clock(), time.time()
        if reply.header.rc == 100:
            self.cache.put_negative(ident.key, now)
            return ResolveResult(Outcome.NOT_FOUND)
        values = ()
        if reply.header.rc == 1:
            values = tuple(v for v in reply.body.values if v.public_read)
        self.cache.put(ident.key, values, now, wall)  # no values: clears the key
        return ResolveResult(Outcome.OK if values else Outcome.VALUES_NOT_FOUND, values)

    # -- locating and asking -------------------------------------------------------------------
    async def _ask_identifier(self, ident: Identifier, budget: _Budget) -> Message:
        sites, cached = await self._locate(ident, budget, refresh=budget.authoritative)
        if budget.authoritative:
            # handle.md §4 item 4: authoritative requests go to primary sites only
            sites = tuple(s for s in sites if s.primary)
            if not sites:
                raise NotResponsible(f"no primary site serves {ident.prefix}")
        try:
            reply, site = await self._ask(ident.text, (), budget, sites, relocatable=cached)
        except _Relocate as exc:
            # The server found through cached site info says the handle is not (or no
            # longer) there: the site info is out of date — locate the prefix afresh, once.
            self.cache.invalidate_site(ident.prefix_key)
            budget.step(str(exc))
            sites, _ = await self._locate(ident, budget, refresh=True)
            reply, site = await self._ask(ident.text, (), budget, sites)
        serial = reply.header.site_serial
        if site is not None and serial != _NO_SERIAL and serial != site.serial:
            self.cache.invalidate_site(ident.prefix_key)  # the site changed: re-read it next time
        return reply

    async def _locate(self, ident: Identifier, budget: _Budget,
                      refresh: bool = False) -> tuple[tuple[SiteInfo, ...], bool]:  # fmt: skip
        """The sites serving ``ident``'s prefix and whether they came from the cache."""
        prefix = ident.prefix_key
        held = None if refresh else self.cache.get_site(prefix, self.clock())
        if held is not None and held.fresh:
            return held.site, True
        handle = "0.NA/" + ident.prefix
        try:
            reply, _ = await self._ask(handle, PREFIX_QUERY_TYPES, budget, None)
        except UpstreamUnavailable:
            if held is not None:  # stale site info beats none when every top-level fails
                return held.site, True
            raise
        values = reply.body.values if reply.header.rc == 1 else ()
        found = _sites_in(values, SITE_TYPES)
        if found:
            used = [values[i] for _, i in found]
            sites = tuple(s for s, _ in found)
        else:
            services = _typed(values, ("HS_SERV",))
            if not services:
                raise NotResponsible(f"{handle}: no site serves the prefix")
            budget.step(f"{handle}: HS_SERV")
            self.counters["referrals"] += 1
            used, sites = await self._service_sites(services[0].data.decode("utf-8", "replace"),
                                                    budget)  # fmt: skip
        ttl = answer_ttl(used, self.cache.max_ttl, time.time())
        self.cache.put_site(prefix, sites, ttl, sites[0].serial, self.clock())
        return sites, False

    async def _service_sites(self, service: str, budget: _Budget
                             ) -> tuple[list[HandleValue], tuple[SiteInfo, ...]]:  # fmt: skip
        """The HS_SITE values of the service handle ``service`` (resolved like any handle)
        and the sites they describe; ``NotResponsible`` when it has none."""
        try:
            ident = Identifier.parse(service, case_sensitive=self.case_sensitive)
        except InvalidIdentifier:
            raise NotResponsible(f"service handle {service!r} is not a handle") from None
        if ident.is_prefix_handle:
            reply, _ = await self._ask(ident.key.decode("utf-8"), SITE_TYPES, budget, None)
        else:
            sites, _ = await self._locate(ident, budget)
            reply, _ = await self._ask(ident.text, SITE_TYPES, budget, sites)
        values = reply.body.values if reply.header.rc == 1 else ()
        found = _sites_in(values, SITE_TYPES)
        if not found:
            raise NotResponsible(f"service handle {service} lists no site")
        return [values[i] for _, i in found], tuple(s for s, _ in found)

    async def _referral_sites(self, reply: Message, where: str,
                              budget: _Budget) -> tuple[SiteInfo, ...]:  # fmt: skip
        """The sites an RC 302/303 ``reply`` refers to (one step of the budget)."""
        budget.step(f"RC {reply.header.rc} from {where}")
        self.counters["referrals"] += 1
        body = reply.body
        values = body.values if isinstance(body, ReferralResponse) else ()
        found = _sites_in(values, REFERRAL_SITE_TYPES)
        if found:
            return tuple(s for s, _ in found)
        services = [v.data.decode("utf-8", "replace") for v in _typed(values, SERVICE_TYPES)]
        if isinstance(body, ReferralResponse) and body.handle:
            services.append(body.handle.decode("utf-8", "replace"))
        for service in services:
            try:
                return (await self._service_sites(service, budget))[1]
            except (NotResponsible, UpstreamUnavailable, HandleNotFound):
                continue
        raise NotResponsible(f"the referral from {where} names no site")

    async def _ask(self, handle: str, types: Sequence[str], budget: _Budget,
                   sites: Sequence[SiteInfo] | None, *, relocatable: bool = False
                   ) -> tuple[Message, SiteInfo | None]:  # fmt: skip
        """Resolve ``handle`` (``types``; () = all) at ``sites`` (None: the top-level
        upstreams), following referrals.  The first reply with RC 1, 100 or 200 and the site
        that gave it (None: a top-level).  ``relocatable``: RC 301/300 raises ``_Relocate``."""
        if sites is None:
            order = self.health.order(self.clock())
            targets = [_Target(h, [("auto", p)], (h, p)) for h, p in order]
            if not targets:
                raise UpstreamUnavailable("every top-level upstream is down")
        else:
            targets = [t for t in (_site_target(s, handle) for s in sites) if t is not None]
            if not targets:
                raise NotResponsible(f"no site offers a query interface for {handle}")
        not_here, failure = None, None
        for target in targets:
            try:
                reply = await self._send(target, handle, types, budget)
            except UpstreamUnavailable as exc:
                failure = exc
                continue
            rc = reply.header.rc
            if rc in (1, 100, 200):
                return reply, target.site
            if rc in (302, 303):
                referred = await self._referral_sites(reply, str(target), budget)
                return await self._ask(handle, types, budget, referred)
            if rc in (300, 301):
                if relocatable:
                    raise _Relocate(f"RC {rc} from {target} for {handle}")
                not_here = f"{target} does not serve {handle} (RC {rc})"
                continue
            failure = UpstreamUnavailable(f"{target} answered RC {rc} for {handle}")
        if not_here is not None:
            raise NotResponsible(not_here)
        raise failure

    async def _send(self, target: _Target, handle: str, types: Sequence[str],
                    budget: _Budget) -> Message:  # fmt: skip
        """One request to one server (its tries in order); health recorded for a top-level.
        A reply that does not name ``handle`` is no reply (reliability.md §A3)."""
        failure = None
        for proto, port in target.tries:
            self.counters["upstream_queries"] += 1
            budget.sent += 1
            try:
                reply = await self.client.resolve(handle, types=types, server=(target.host, port),
                                                  proto=proto, request_digest=True,
                                                  authoritative=budget.authoritative)  # fmt: skip
                if reply.header.rc == 1 and not self._names(reply, handle):
                    raise UpstreamUnavailable(f"{target} answered for another handle")
            except UpstreamUnavailable as exc:
                self.counters["upstream_failures"] += 1
                failure = exc
                continue
            if target.upstream is not None:
                self.health.record(target.upstream, True, self.clock())
            return reply
        if target.upstream is not None:
            self.health.record(target.upstream, False, self.clock())
        raise failure

    def _names(self, reply: Message, handle: str) -> bool:
        body = reply.body
        if not isinstance(body, ResolutionResponse):
            return False
        try:
            got = Identifier.parse(body.handle, case_sensitive=self.case_sensitive)
        except InvalidIdentifier:
            return False
        return got.key == Identifier.parse(handle, case_sensitive=self.case_sensitive).key

    # -- probes and status -----------------------------------------------------------------------
    def drain_prefix_queries(self) -> dict[bytes, int]:
        """``prefix_queries``, and start again from zero."""
        out, self.prefix_queries = self.prefix_queries, {}
        return out

    async def probe_due(self) -> list[tuple[str, int]]:
        """Probe every down upstream due a probe (claimed from ``health.probes_due``) with one
        OC_GET_SITE_INFO; any reply puts it back up.  Returns the upstreams probed."""
        due = self.health.probes_due(self.clock())

        async def probe(upstream: tuple[str, int]) -> None:
            self.counters["upstream_queries"] += 1
            self.counters["probes"] += 1
            try:
                await self.client.get_site_info(upstream, request_digest=True)
                ok = True
            except UpstreamUnavailable:
                self.counters["upstream_failures"] += 1
                ok = False
            self.health.record(upstream, ok, self.clock())

        await asyncio.gather(*(probe(u) for u in due))
        return due

    async def close(self) -> None:
        """Shutdown: cancel every resolution in flight (their waiters get ``CancelledError``;
        nothing more reaches the cache)."""
        running = list(self._running)
        self.flight.cancel_all()
        await asyncio.gather(*running, return_exceptions=True)

    def next_probe(self) -> float | None:
        """Seconds until a down upstream is due a probe (0: now); None when all are up."""
        return self.health.next_probe(self.clock())

    def status(self) -> dict:
        """Health per upstream (``host:port`` → ``UpstreamHealth.status`` row), cache stats,
        counters and the number of flights in the air: plain JSON-able data."""
        health = self.health.status(self.clock())
        return {
            "upstreams": {_name(u): health[u] for u in self.upstreams},
            "cache": self.cache.stats(),
            "counters": dict(self.counters),
            "in_flight": len(self.flight),
        }  # fmt: skip


class _Relocate(Exception):
    """A server found through cached site info disowned the handle (RC 300/301)."""
