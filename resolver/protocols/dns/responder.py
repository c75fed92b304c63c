"""The general-path DNS responder: one query message in, one response message out (issue 6 §2–4).

Owns ``respond`` (query bytes → response bytes), its two halves ``parse`` and ``finish`` (for
a caller whose lookup must be awaited), ``Zone`` (the apex and its SOA/NS data) and the
``NOT_HELD`` sentinel of the lookup contract.  Sans-IO: no sockets, store or configuration;
the caller injects the lookup, the clock and the transport facts (UDP limit, TCP or not).
dnspython parses and renders: this is the path for every query the fast path (a Cython twin,
issue 6 §4) does not take, so it favours completeness over speed.

Contract
========

``respond(query, zone, lookup, *, now, max_udp=1232, tcp=False, ancestor=None) -> bytes``;
``b""`` = send nothing.  It never raises for any ``query`` bytes; ``ValueError`` only for a bad
``max_udp``.  ``lookup(key_text)`` is called at most once, with the canonical identifier (its
storage key as text, ``mapping.from_dns_name``), and returns the record's values in index order,
``None`` (no such identifier under a prefix held here) or ``NOT_HELD`` (the prefix is not held
here).  An ``IdnodeError`` it raises is answered with ``codes.RCODE_FOR[error.outcome]``; any
other exception is a bug and propagates.  ``ancestor(prefix_text) -> bool`` says whether a
prefix is held here or is a dotted ancestor of one held (``88`` when ``88.118.8`` is held);
without it no name is an empty non-terminal.

``parse(query, zone, *, max_udp, tcp)`` returns the response bytes when the answer needs no
lookup, else a ``Pending`` whose ``key`` is the identifier to look up (``None``: the name names
no identifier, only the empty-non-terminal question remains); ``finish(pending, found, *, now,
ancestor)`` completes it, ``found`` being what ``lookup`` would return — or an ``Outcome`` for
a failed lookup.  ``respond`` is exactly ``finish(parse(…), lookup(key))``.

Decision table, first match wins (RCODE names of RFC 1035 §4.1.1 / RFC 6895 §2.3):

==========================================  ===================================================
query                                       response
==========================================  ===================================================
< 12 bytes (no header to answer)            ``b""``
QR=1 (a response, not a query)              ``b""``: answering responses invites loops
OPCODE ≠ QUERY                              NOTIMP, header only
not parsable (dnspython), trailing bytes,   FORMERR, header only (id, opcode, RD, CD echoed)
several OPT RRs (RFC 6891 §6.1.1)
TSIG-signed (no keys are configured)        NOTAUTH, header only (RFC 8945 §5.2.2, without
                                            its TSIG error RR: we hold no key to speak with)
OPT version > 0                             BADVERS, with OPT version 0 (RFC 6891 §6.1.3)
QDCOUNT ≠ 1                                 FORMERR, no question
QCLASS ≠ IN                                 REFUSED: no zone of that class here (as CoreDNS;
                                            NOTIMP would claim the class is unknown to DNS)
QTYPE AXFR / IXFR                           REFUSED: the zone is synthesised from the store and
                                            never transferred (a denied transfer's usual code)
QNAME not at or under the apex              REFUSED (not authoritative; no recursion)
QNAME = apex: SOA / NS                      AA, the zone's SOA / NS RRset
QNAME = apex: ANY                           AA, the SOA RRset alone (RFC 8482 §4.1 subset)
QNAME = apex: any other type                AA, NODATA
under the apex, not a mapped name           empty non-terminal (below) → AA, NODATA; else
                                            AA, NXDOMAIN
lookup → NOT_HELD                           empty non-terminal → AA, NODATA; else REFUSED
                                            (not authoritative for that prefix)
lookup → None                               empty non-terminal → AA, NODATA; else AA,
                                            NXDOMAIN
lookup → values, QTYPE TXT/URI/NAPTR/ANY    AA, ``answers.rrsets_for``; none → NODATA
lookup → values, any other type             AA, NODATA
lookup raises IdnodeError / an Outcome      ``codes.RCODE_FOR[outcome]``, no AA (SERVFAIL for
                                            a store failure); except: NXDOMAIN outcomes as
                                            ``None``, VALUES_NOT_FOUND as no values (NODATA),
                                            NOT_RESPONSIBLE as ``NOT_HELD``

Empty non-terminals.  A name every label of which is a prefix segment in the mapping
(``mapping.prefix_of_dns_name``: ``88.id.idnode.test.``, ``118.88.id.idnode.test.``) exists
in the zone when that prefix is held or is an ancestor of one held — identifiers' names lie
below it — so it answers NODATA, not NXDOMAIN (RFC 8020 §2; RFC 9156 QNAME minimisation asks
exactly those names first).  ``8.118.88.id.idnode.test.`` reads both as the identifier
``88.118/8`` and as the prefix ``88.118.8``: a hit answers the identifier's data, a miss
NODATA when ``88.118.8`` is held.
==========================================  ===================================================

NXDOMAIN and NODATA (NOERROR, empty answer) carry the zone's SOA in the authority section with
TTL ``min(soa ttl, minimum)`` (RFC 2308 §3).  Answer RRs keep ``rrsets_for``'s order (no
shuffling: deterministic bytes, comparable with the fast path's).  No additional section is ever sent (no glue: the
NS names are configuration, not data of this zone).  Flags: QR=1; AA as above; RA=0 (RFC 1035
§4.1.1: no recursion offered); RD and CD copied (RFC 1035 §4.1.1, RFC 4035 §3.1.6).  The
question is echoed byte-for-byte in case (RFC 4343 §4.1; 0x20-randomising resolvers depend on
it); names compress against it, so owners (and SOA/NS names under the apex) read in the
query's spelling too, which DNS's case-insensitive names allow (RFC 4343 §3).

EDNS(0) (RFC 6891): with an OPT in the query the response has one, version 0, UDP payload
``max_udp``, the query's DO bit copied (RFC 3225 §3), no options (cookies, padding and
others are ignored, RFC 6891 §6.1.2).  Size limit of the response: over TCP 65535 (RFC 1035
§4.2.2); over UDP ``max(512, min(client payload, max_udp))`` with OPT (a payload under 512 is
read as 512, RFC 6891 §6.2.5), 512 without (RFC 1035 §4.2.1).  A response over the limit is
replaced by the header (TC=1, same RCODE and AA) + question + OPT, never a partial RRset
(RFC 2181 §9, RFC 7766 §5: the client retries over TCP and gets it whole).  A response that
exceeds even 65535 bytes over TCP is answered the same way (TC=1): it cannot be served.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import struct
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.SOA
import dns.rrset

from resolver.errors import IdnodeError, Outcome
from resolver.protocols.dns import answers, mapping
from resolver.protocols.dns.codes import RCODE_FOR
from resolver.values import HandleValue


class NotHeld(enum.Enum):
    """Type of ``NOT_HELD``: the lookup's "the prefix is not held here" (≠ ``None``, a miss)."""

    NOT_HELD = "not held"


NOT_HELD = NotHeld.NOT_HELD
Lookup = Callable[[str], tuple[HandleValue, ...] | None | NotHeld]

HEADER = struct.Struct(">HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
MIN_UDP = 512  # RFC 1035 §4.2.1; RFC 6891 §6.2.5
MAX_TCP = 65535  # RFC 1035 §4.2.2: two-byte length prefix
_ECHOED = dns.flags.RD | dns.flags.CD
_OPCODE_MASK = 0x7800
_ANSWERED = (answers.TXT, answers.URI, answers.NAPTR, answers.ANY)
_U32 = 0xFFFFFFFF


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Zone:
    """The apex and the zone data served there.  Names are absolute (a missing final dot is
    implied); ``rname`` is the SOA mailbox as a domain name (``hostmaster.id.idnode.test.``).
    SOA numbers are u32 (RFC 1035 §3.3.13), ``ttl`` (of SOA and NS) 0..2³¹−1 (RFC 2181 §8).
    Raises ``ValueError`` for a bad apex or name, a number out of range, or no NS."""

    apex: str = mapping.DEFAULT_APEX
    case_sensitive: bool = False
    mname: str
    rname: str
    serial: int = 1
    refresh: int = 3600
    retry: int = 600
    expire: int = 604800
    minimum: int = 300
    ttl: int = 3600
    ns: tuple[str, ...]

    def __post_init__(self) -> None:
        mapping.from_dns_name(self.apex, self.apex)  # the mapping's own apex check (ValueError)
        for name in (self.mname, self.rname, *self.ns):
            _name(name)
        if not self.ns:
            raise ValueError("a zone needs at least one NS name (RFC 1034 §4.2.1)")
        for field in ("serial", "refresh", "retry", "expire", "minimum"):
            if not 0 <= getattr(self, field) <= _U32:
                raise ValueError(f"SOA {field} out of range 0..2^32-1")
        if not 0 <= self.ttl <= answers.MAX_TTL:
            raise ValueError("zone ttl out of range 0..2^31-1")


@dataclasses.dataclass(slots=True, eq=False)
class Pending:
    """A parsed query that needs the store: look ``key`` up (unless ``None``), then ``finish``."""

    key: str | None
    zone: Zone
    resp: dns.message.Message
    question: dns.rrset.RRset
    limit: int


Found = tuple[HandleValue, ...] | None | NotHeld | Outcome


def respond(
    query: bytes,
    zone: Zone,
    lookup: Lookup,
    *,
    now: int,
    max_udp: int = 1232,
    tcp: bool = False,
    ancestor: Callable[[str], bool] | None = None,
) -> bytes:
    """The response to one DNS ``query`` message, or ``b""`` to drop it (module contract)."""
    pending = parse(query, zone, max_udp=max_udp, tcp=tcp)
    if not isinstance(pending, Pending):
        return pending
    found: Found = None
    if pending.key is not None:
        try:
            found = lookup(pending.key)
        except IdnodeError as exc:
            found = exc.outcome
    return finish(pending, found, now=now, ancestor=ancestor)


def parse(query: bytes, zone: Zone, *, max_udp: int = 1232, tcp: bool = False) -> bytes | Pending:
    """The first half of ``respond``: the response itself, or what to look up (contract)."""
    if not MIN_UDP <= max_udp <= MAX_TCP:
        raise ValueError(f"max_udp must be {MIN_UDP}..{MAX_TCP}")
    if len(query) < HEADER.size:
        return b""
    qid, qflags, qdcount = struct.unpack_from(">HHH", query)
    if qflags & dns.flags.QR:
        return b""
    if qflags & _OPCODE_MASK != dns.opcode.to_flags(dns.opcode.QUERY):
        return _header_only(qid, qflags, dns.rcode.NOTIMP)
    try:
        msg = dns.message.from_wire(query)
    except dns.message.UnknownTSIGKey:
        return _header_only(qid, qflags, dns.rcode.NOTAUTH)
    except Exception:  # noqa: BLE001 — untrusted bytes into a third-party parser: any failure
        return _header_only(qid, qflags, dns.rcode.FORMERR)  # is the sender's, never a crash

    resp = dns.message.Message(id=qid)
    resp.flags = dns.flags.QR | (msg.flags & _ECHOED)
    if msg.edns >= 0:
        resp.use_edns(0, msg.ednsflags & dns.flags.DO, max_udp)
    if tcp:
        limit = MAX_TCP
    elif msg.edns >= 0:
        limit = max(MIN_UDP, min(msg.payload, max_udp))
    else:
        limit = MIN_UDP

    if msg.edns > 0:
        resp.question = list(msg.question)
        resp.set_rcode(dns.rcode.BADVERS)
    elif qdcount != 1 or len(msg.question) != 1:
        resp.set_rcode(dns.rcode.FORMERR)
    else:
        resp.question = list(msg.question)
        q = msg.question[0]
        if _answer_zone(resp, q, zone):
            return Pending(
                mapping.from_dns_name(q.name.to_text(), zone.apex,
                                      case_sensitive=zone.case_sensitive),
                zone, resp, q, limit,
            )  # fmt: skip
    return _render(resp, limit)


def finish(pending: Pending, found: Found, *, now: int,
           ancestor: Callable[[str], bool] | None = None,
           authoritative: bool = True) -> bytes:  # fmt: skip
    """The second half of ``respond``: ``found`` is the lookup's answer for ``pending.key``.
    ``authoritative=False`` (data forwarded from upstream or a takeover copy): the same
    answer without AA (RFC 1035 §4.1.1: AA only from an authority for the data)."""
    resp, q, records = pending.resp, pending.question, _records(pending.zone)
    if isinstance(found, Outcome):  # a failed (or engine-answered) lookup: RCODE_FOR decides
        if RCODE_FOR[found] == dns.rcode.NXDOMAIN:
            found = None  # a negative answer proper: AA, SOA, empty-non-terminal check
        elif found is Outcome.VALUES_NOT_FOUND:
            found = ()  # the name exists, nothing public: NODATA
        elif found is Outcome.NOT_RESPONSIBLE:
            found = NOT_HELD
        else:
            resp.set_rcode(RCODE_FOR[found])
            return _render(resp, pending.limit)
    if found is None or found is NOT_HELD:
        prefix = mapping.prefix_of_dns_name(q.name.to_text(), pending.zone.apex)
        if prefix is not None and ancestor is not None and ancestor(prefix):
            _negative(resp, records, dns.rcode.NOERROR)  # empty non-terminal: NODATA
        elif found is NOT_HELD:
            resp.set_rcode(RCODE_FOR[Outcome.NOT_RESPONSIBLE])  # REFUSED
        else:
            _negative(resp, records, RCODE_FOR[Outcome.NOT_FOUND])  # NXDOMAIN
    else:
        rrs = answers.rrsets_for(found, q.rdtype, now=now) if q.rdtype in _ANSWERED else []
        if not rrs:
            _negative(resp, records, dns.rcode.NOERROR)  # NODATA, RFC 2308 §2.2
        else:
            resp.flags |= dns.flags.AA
            rrset = dns.rrset.RRset(q.name, dns.rdataclass.IN, rrs[0].rtype)  # ANY → TXT
            for rr in rrs:
                # The RDATA is already wire format (answers' contract): carried as is.
                rrset.add(dns.rdata.GenericRdata(dns.rdataclass.IN, rr.rtype, rr.rdata), rr.ttl)
            resp.answer.append(rrset)
    if not authoritative:
        resp.flags &= ~dns.flags.AA
    return _render(resp, pending.limit)


def _answer_zone(resp: dns.message.Message, q: dns.rrset.RRset, zone: Zone) -> bool:
    """Fill ``resp`` for the rows of the table that need no lookup; True: the store decides."""
    records = _records(zone)
    if q.rdclass != dns.rdataclass.IN or q.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        resp.set_rcode(dns.rcode.REFUSED)
        return False
    if not q.name.is_subdomain(records.apex):  # case-insensitive (RFC 4343)
        resp.set_rcode(dns.rcode.REFUSED)
        return False
    if q.name == records.apex:
        resp.flags |= dns.flags.AA
        if q.rdtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
            resp.answer.append(records.soa)
        elif q.rdtype == dns.rdatatype.NS:
            resp.answer.append(records.ns)
        else:
            resp.authority.append(records.negative_soa)  # NODATA
        return False
    return True


def _negative(resp: dns.message.Message, records: _Records, rcode: dns.rcode.Rcode) -> None:
    """NXDOMAIN / NODATA: AA and the SOA in authority (RFC 2308 §2.1, §2.2, §3)."""
    resp.flags |= dns.flags.AA
    resp.set_rcode(rcode)
    resp.authority.append(records.negative_soa)


def _render(resp: dns.message.Message, limit: int) -> bytes:
    # want_shuffle=False: RRs go out in the values' order, so answers are deterministic (and
    # comparable with the fast path's); URI priority / NAPTR order carry the preference anyway.
    try:
        return resp.to_wire(max_size=limit, want_shuffle=False)
    except dns.exception.TooBig:
        # RFC 2181 §9 / RFC 7766 §5: no partial RRsets; TC=1 and the question send the client
        # to TCP.  Header + question (≤ 259 + 4) + OPT (11) always fit 512.
        resp.answer, resp.authority, resp.additional = [], [], []
        resp.flags |= dns.flags.TC
        return resp.to_wire(max_size=limit, want_shuffle=False)


def _header_only(qid: int, qflags: int, rcode: int) -> bytes:
    flags = dns.flags.QR | (qflags & (_OPCODE_MASK | _ECHOED)) | rcode
    return HEADER.pack(qid, flags, 0, 0, 0, 0)


def _name(text: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as e:
        raise ValueError(f"bad DNS name {text!r}: {e}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class _Records:
    apex: dns.name.Name
    soa: dns.rrset.RRset  # TTL zone.ttl: the answer to SOA at the apex
    ns: dns.rrset.RRset
    negative_soa: dns.rrset.RRset  # TTL min(ttl, minimum): authority of NXDOMAIN / NODATA


@functools.lru_cache(maxsize=16)
def _records(zone: Zone) -> _Records:
    """The zone's RRsets, built once per ``Zone`` (never mutated: messages only read them)."""
    apex = _name(zone.apex)
    rd = dns.rdtypes.ANY.SOA.SOA(
        dns.rdataclass.IN, dns.rdatatype.SOA, _name(zone.mname), _name(zone.rname),
        zone.serial, zone.refresh, zone.retry, zone.expire, zone.minimum,
    )  # fmt: skip
    soa = dns.rrset.from_rdata(apex, zone.ttl, rd)
    negative = dns.rrset.from_rdata(apex, min(zone.ttl, zone.minimum), rd)  # RFC 2308 §3
    ns = dns.rrset.from_rdata_list(apex, zone.ttl, [
        dns.rdtypes.ANY.NS.NS(dns.rdataclass.IN, dns.rdatatype.NS, _name(n)) for n in zone.ns
    ])  # fmt: skip
    return _Records(apex, soa, ns, negative)
