"""The DNS general path: one query message → the engine → the response bytes (issue 6).

Shared by the UDP and TCP drivers; no sockets here.  ``DnsFrontEnd.answer(query, tcp=)``
parses with ``responder.parse``, resolves the name's identifier through the engine (public
values only: the DNS face is anonymous), and finishes with ``responder.finish`` — so a
foreign identifier takes whatever path the engine's chain gives it, as on the other
front-ends.  The drivers try the fast path (``native.dns_answer``) first; it answers the
common query with the same bytes (tests/unit/test_native_dns.py).

Also owns ``zone_of(config)`` and ``native_zone(config)``: the configured zone as the responder
and the fast path take it, and ``ancestor``, the empty-non-terminal question the responder asks
the store.
"""

from __future__ import annotations

import time

import native
from resolver.config import Config
from resolver.core import stats
from resolver.core.engine import Resolver
from resolver.core.request import ResolveRequest
from resolver.errors import IdnodeError, Outcome
from resolver.identifier import NA_PREFIX, Identifier
from resolver.protocols.dns import responder
from resolver.store.lmdb_store import LmdbStore

_NA = NA_PREFIX.encode()


def zone_of(config: Config) -> responder.Zone:
    """The zone of ``[dns]`` (``ValueError`` for a bad apex or name: a configuration error)."""
    return responder.Zone(
        apex=config.dns_apex, case_sensitive=config.case_sensitive,
        mname=config.dns_ns_names[0], rname=config.dns_rname, ns=config.dns_ns_names,
        serial=config.dns_soa_serial, refresh=config.dns_soa_refresh,
        retry=config.dns_soa_retry, expire=config.dns_soa_expire,
        minimum=config.dns_soa_minimum, ttl=config.dns_soa_ttl,
    )  # fmt: skip


def native_zone(config: Config):
    """The fast path's ``native.DnsZone`` for ``[dns]``: the apex in lower-case wire form."""
    apex = config.dns_apex.lower().rstrip(".")
    labels = apex.split(".") if apex else []
    wire = b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\0"
    return native.DnsZone(wire, config.case_sensitive, config.dns_max_udp)


class DnsFrontEnd:
    def __init__(self, resolver: Resolver, store: LmdbStore, config: Config,
                 tally: dict | None = None) -> None:  # fmt: skip
        self.resolver = resolver
        #: resolutions counted (``core.stats``); the drivers pass it to the fast path too
        self.tally = tally if tally is not None else {}
        self.store = store
        self.zone = zone_of(config)
        self.max_udp = config.dns_max_udp
        self.case_sensitive = config.case_sensitive
        # DNS queries carry RD, but a stub sets it always: [upstream] recursion alone decides.
        self.recursion = config.upstream_recursion

    async def answer(self, query: bytes, *, tcp: bool) -> bytes:
        """The response to ``query`` (``b""``: send nothing); never raises for any bytes."""
        pending = responder.parse(query, self.zone, max_udp=self.max_udp, tcp=tcp)
        if not isinstance(pending, responder.Pending):
            return pending
        found: responder.Found = None
        authoritative = True
        if pending.key is not None:
            try:
                ident = Identifier.parse(pending.key, case_sensitive=self.case_sensitive)
            except IdnodeError as exc:  # the mapping only yields valid keys; defensive
                found = exc.outcome
                stats.count(self.tally, b"", exc.outcome)
            else:
                request = ResolveRequest(ident, public_only=True, recursive=self.recursion)
                result = await self.resolver.resolve(request)
                stats.count(self.tally, ident.prefix_key, result.outcome)
                found = result.values if result.outcome is Outcome.OK else result.outcome
                authoritative = result.authoritative
        return responder.finish(pending, found, now=int(time.time()), ancestor=self.ancestor,
                                authoritative=authoritative)  # fmt: skip

    def ancestor(self, prefix: str) -> bool:
        """Is ``prefix`` held here, or a dotted ancestor of a prefix held here?  ``0`` and
        ``0.NA`` are ancestors of every prefix handle's name (``…na.0.<apex>``)."""
        key = prefix.encode("utf-8")
        with self.store.read() as txn:
            cur = txn.cursor(self.store.prefixes_db)
            if key in (b"0", _NA):
                return cur.first()
            if cur.set_key(key):
                return True
            below = key + b"."
            return cur.set_range(below) and cur.key().startswith(below)
