"""The general-path DNS responder (``resolver.protocols.dns.responder``, issue 6 §2–4).

dnspython plays the client: queries come from ``dns.message.make_query`` (or hand-built bytes
for what it refuses to build) and every answer is read back with ``dns.message.from_wire``.
One test per row of the module's decision table; EDNS sizes and truncation at the exact byte
boundary, with the same query over TCP giving the whole answer; the question echoed in the
query's case; ``Zone`` validation; and fuzzing: random and mutated packets never raise, and
every non-empty answer parses and carries the query's id.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.errors import InvalidIdentifier, Outcome, StoreError
from resolver.protocols.dns.answers import rrsets_for
from resolver.protocols.dns.mapping import to_dns_name
from resolver.protocols.dns.responder import NOT_HELD, Pending, Zone, finish, parse, respond
from resolver.values import TTL_ABSOLUTE, HandleValue

NOW = 1_700_000_000
APEX = "id.idnode.test."
ZONE = Zone(
    apex=APEX, mname="ns1.id.idnode.test.", rname="hostmaster.id.idnode.test.",
    serial=2026010101, refresh=7200, retry=900, expire=1209600, minimum=120, ttl=3600,
    ns=("ns1.id.idnode.test.", "ns2.other.test."),
)  # fmt: skip
NEG_TTL = 120  # min(3600, 120), RFC 2308 §3


def V(index, vtype, data, **kw) -> HandleValue:
    return HandleValue(index, vtype, data.encode() if isinstance(data, str) else data, **kw)


SN = "88.118.8/SN-2026-0001"
RECORDS: dict[str, tuple[HandleValue, ...]] = {
    SN: (
        V(1, "URL", "https://example.test/sn/1", ttl=600),
        V(2, "EMAIL", "ops@example.test", ttl=900),
        V(3, "SECRET", "hidden", permissions=0x0C),
        V(4, "URL", "https://mirror.test/sn/1", ttl=NOW + 300, ttl_type=TTL_ABSOLUTE),
    ),
    "88.118.8/PRIVATE": (V(1, "URL", "https://x.test/", permissions=0x0C),),
    "88.118.8/NOURL": (V(1, "EMAIL", "a@b.test"),),
}
SERVED = "88.118.8"


class Lookup:
    """The injected lookup: a dict of records under one held prefix; remembers its calls."""

    def __init__(self, records=RECORDS, held=(SERVED,)):
        self.records, self.held, self.calls = records, held, []

    def __call__(self, key: str):
        self.calls.append(key)
        if key.partition("/")[0] not in self.held:
            return NOT_HELD
        return self.records.get(key)


def ask(qname, qtype="TXT", *, zone=ZONE, lookup=None, rdclass="IN", tcp=False, max_udp=1232,
        **make_kw):  # fmt: skip
    """(query, parsed response) for one make_query question."""
    q = dns.message.make_query(qname, qtype, rdclass, **make_kw)
    wire = respond(q.to_wire(), zone, lookup or Lookup(), now=NOW, max_udp=max_udp, tcp=tcp)
    r = dns.message.from_wire(wire)
    assert r.id == q.id and r.flags & dns.flags.QR and not r.flags & dns.flags.RA
    return q, r


def name_of(identifier: str) -> str:
    return to_dns_name(identifier, APEX)


def rdatas(rrset) -> list[bytes]:
    return [rd.to_wire() for rd in rrset]


def header(qid=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION = dns.name.from_text(name_of(SN)).to_wire() + struct.pack(">HH", 16, 1)


# -- header-level rules -------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(12))
def test_shorter_than_a_header_is_dropped(size):
    assert respond(b"\x12\x34\x01\x00\x00\x01\x00"[:size].ljust(size, b"\0"), ZONE, Lookup(),
                   now=NOW) == b""  # fmt: skip


def test_a_response_is_dropped():
    q = dns.message.make_query(name_of(SN), "TXT")
    q.flags |= dns.flags.QR
    assert respond(q.to_wire(), ZONE, Lookup(), now=NOW) == b""
    assert respond(header(flags=0x8000) + QUESTION, ZONE, Lookup(), now=NOW) == b""


@pytest.mark.parametrize("opcode", [1, 2, 3, 4, 5, 6, 15])
def test_other_opcodes_are_notimp(opcode):
    wire = respond(header(flags=(opcode << 11) | 0x0100) + QUESTION, ZONE, Lookup(), now=NOW)
    r = dns.message.from_wire(wire)
    assert (r.id, r.rcode(), r.opcode()) == (0x1234, dns.rcode.NOTIMP, opcode)
    assert r.flags & dns.flags.RD and not r.flags & dns.flags.AA and r.question == []


@pytest.mark.parametrize("body", [
    b"",  # qdcount 1 but nothing follows
    b"\x05abc",  # label runs past the end
    QUESTION[:-1],  # truncated type/class
    QUESTION + b"\x00",  # trailing junk
    b"\xc0\x0c" + b"\x00\x10\x00\x01",  # compression pointer loop onto itself
])  # fmt: skip
def test_unparsable_is_formerr_with_the_id(body):
    wire = respond(header(qid=0xBEEF) + body, ZONE, Lookup(), now=NOW)
    r = dns.message.from_wire(wire)
    assert (r.id, r.rcode()) == (0xBEEF, dns.rcode.FORMERR)
    assert r.flags & dns.flags.RD and r.question == [] and r.answer == []


def test_two_opt_records_are_formerr():  # RFC 6891 §6.1.1
    opt = b"\x00" + struct.pack(">HHIH", 41, 1232, 0, 0)
    wire = respond(header(ar=2) + QUESTION + opt + opt, ZONE, Lookup(), now=NOW)
    assert dns.message.from_wire(wire).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize("qd", [0, 2])
def test_qdcount_other_than_one_is_formerr(qd):
    wire = respond(header(qd=qd) + QUESTION * qd, ZONE, Lookup(), now=NOW)
    r = dns.message.from_wire(wire)
    assert r.rcode() == dns.rcode.FORMERR and r.question == [] and not r.flags & dns.flags.AA


def test_tsig_signed_query_is_notauth():
    import dns.tsigkeyring

    q = dns.message.make_query(name_of(SN), "TXT")
    q.use_tsig(dns.tsigkeyring.from_text({"k.": "AAAAAAAAAAAAAAAAAAAAAA=="}), keyname="k.")
    r = dns.message.from_wire(respond(q.to_wire(), ZONE, Lookup(), now=NOW))
    assert (r.id, r.rcode()) == (q.id, dns.rcode.NOTAUTH)


@pytest.mark.parametrize("rdclass", ["CH", "HS", "ANY"])
def test_class_other_than_in_is_refused(rdclass):
    _, r = ask(name_of(SN), rdclass=rdclass)
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA and r.answer == []
    assert r.question[0].rdclass == dns.rdataclass.from_text(rdclass)


@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
def test_zone_transfer_is_refused(qtype):
    for name in (APEX, name_of(SN)):
        _, r = ask(name, qtype)
        assert r.rcode() == dns.rcode.REFUSED and r.answer == []


def test_flags_rd_cd_copied_ra_never_set():
    for flags in (0, dns.flags.RD, dns.flags.CD, dns.flags.RD | dns.flags.CD):
        q = dns.message.make_query(name_of(SN), "TXT", flags=flags)
        r = dns.message.from_wire(respond(q.to_wire(), ZONE, Lookup(), now=NOW))
        assert r.flags & (dns.flags.RD | dns.flags.CD) == flags
        assert not r.flags & (dns.flags.RA | dns.flags.TC)


# -- the zone -----------------------------------------------------------------------------------


@pytest.mark.parametrize("qname", [
    "example.com.", "idnode.test.", "test.", ".", "xid.idnode.test.", "id.idnode.test.other.",
])  # fmt: skip
def test_outside_the_apex_is_refused(qname):
    lookup = Lookup()
    _, r = ask(qname, lookup=lookup)
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA
    assert r.answer == r.authority == [] and lookup.calls == []


def soa_of(rrset):
    (rd,) = list(rrset)
    # names compare case-insensitively: compression may spell them as the query did
    return (rrset.name.to_text().lower(), rd.mname.to_text().lower(), rd.rname.to_text().lower(),
            rd.serial,
            rd.refresh, rd.retry, rd.expire, rd.minimum)  # fmt: skip


SOA = (APEX, "ns1.id.idnode.test.", "hostmaster.id.idnode.test.", 2026010101, 7200, 900,
       1209600, 120)  # fmt: skip


@pytest.mark.parametrize("qtype", ["SOA", "ANY"])
def test_apex_soa_and_minimal_any(qtype):
    _, r = ask("ID.IdNode.test.", qtype)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    (rrset,) = r.answer
    assert rrset.rdtype == dns.rdatatype.SOA and rrset.ttl == 3600 and soa_of(rrset) == SOA
    assert r.authority == [] and r.additional == []


def test_apex_ns():
    _, r = ask(APEX, "NS")
    (rrset,) = r.answer
    assert r.flags & dns.flags.AA and rrset.rdtype == dns.rdatatype.NS and rrset.ttl == 3600
    targets = sorted(rd.target.to_text().lower() for rd in rrset)
    assert targets == ["ns1.id.idnode.test.", "ns2.other.test."]


@pytest.mark.parametrize("qtype", ["TXT", "A", "URI", "NAPTR", "MX"])
def test_apex_other_types_nodata(qtype):
    _, r = ask(APEX, qtype)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA and r.answer == []
    (soa,) = r.authority
    assert soa_of(soa) == SOA and soa.ttl == NEG_TTL


def assert_negative(r, rcode):
    assert r.rcode() == rcode and r.flags & dns.flags.AA and r.answer == []
    (soa,) = r.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa_of(soa) == SOA and soa.ttl == NEG_TTL


@pytest.mark.parametrize("qname", [
    "88." + APEX,  # one label: no suffix + prefix split
    "sb--1." + "8.118.88." + APEX,  # not base32
    "uc--sn-1.8.118.88." + APEX,  # uc-- only exists in case-sensitive mode
    "a_b.8.118.88." + APEX,  # not a letter/digit/hyphen label
    "-x.8.118.88." + APEX,
])  # fmt: skip
def test_unmapped_names_under_the_apex_are_nxdomain(qname):
    lookup = Lookup()
    _, r = ask(qname, lookup=lookup)
    assert_negative(r, dns.rcode.NXDOMAIN)
    assert lookup.calls == []


def test_unmapped_binary_label_is_nxdomain():
    name = dns.name.Name([b"a\x00.b", b"8", b"118", b"88", *dns.name.from_text(APEX).labels])
    q = dns.message.make_query(name, "TXT")
    assert_negative(dns.message.from_wire(respond(q.to_wire(), ZONE, Lookup(), now=NOW)),
                    dns.rcode.NXDOMAIN)  # fmt: skip


def test_unknown_identifier_is_nxdomain():
    lookup = Lookup()
    _, r = ask(name_of("88.118.8/NOPE"), lookup=lookup)
    assert_negative(r, dns.rcode.NXDOMAIN)
    assert lookup.calls == ["88.118.8/NOPE"]


def test_prefix_not_held_is_refused():
    lookup = Lookup()
    _, r = ask(name_of("20.500/thing"), lookup=lookup)
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA
    assert r.answer == r.authority == [] and lookup.calls == ["20.500/THING"]


def test_lookup_error_is_servfail_and_bugs_propagate():
    def failing(key):
        raise StoreError("disk on fire")

    _, r = ask(name_of(SN), lookup=failing)
    assert r.rcode() == dns.rcode.SERVFAIL and r.answer == [] and not r.flags & dns.flags.AA

    def buggy(key):
        raise KeyError(key)

    q = dns.message.make_query(name_of(SN), "TXT")
    with pytest.raises(KeyError):
        respond(q.to_wire(), ZONE, buggy, now=NOW)


# -- empty non-terminals (RFC 8020 §2, RFC 9156) ------------------------------------------------


class Held:
    """The injected ``ancestor``: held prefixes, and which prefixes it was asked about."""

    def __init__(self, *held):
        self.held, self.asked = held, []

    def __call__(self, prefix: str) -> bool:
        self.asked.append(prefix)
        return any(h == prefix or h.startswith(prefix + ".") for h in self.held)


def ask_ent(qname, *, held=(SERVED,), lookup=None, qtype="TXT"):
    q = dns.message.make_query(qname, qtype)
    ancestor = Held(*held)
    wire = respond(q.to_wire(), ZONE, lookup or Lookup(), now=NOW, ancestor=ancestor)
    return dns.message.from_wire(wire), ancestor


@pytest.mark.parametrize("qname,prefix", [
    ("88." + APEX, "88"),  # one label: no identifier, an ancestor of 88.118.8
    ("118.88." + APEX, "88.118"),  # also the identifier 88/118, under a prefix not held
    ("8.118.88." + APEX, "88.118.8"),  # also 88.118/8: a miss; the prefix itself is held
    ("8.118.88.ID.IDNODE.TEST.", "88.118.8"),  # case-insensitively
])  # fmt: skip
def test_ancestors_of_held_prefixes_are_nodata_not_nxdomain(qname, prefix):
    r, ancestor = ask_ent(qname)
    assert_negative(r, dns.rcode.NOERROR)  # NODATA: AA, SOA in authority
    assert ancestor.asked == [prefix]


@pytest.mark.parametrize("qname,rcode", [
    ("99." + APEX, dns.rcode.NXDOMAIN),  # ancestor of nothing held
    ("9.118.88." + APEX, dns.rcode.REFUSED),  # 88.118/9 not held, 88.118.9 not held
    ("sn-1.8.118.88." + APEX, dns.rcode.NXDOMAIN),  # 88.118.8.SN-1 is not held either
])  # fmt: skip
def test_names_below_nothing_held_keep_their_answer(qname, rcode):
    r, _ = ask_ent(qname)
    assert r.rcode() == rcode


def test_an_identifier_hit_wins_over_the_prefix_reading():
    records = {"88.118/8": (V(1, "URL", "https://x.test/"),)}
    r, ancestor = ask_ent("8.118.88." + APEX, held=("88.118", "88.118.8"),
                          lookup=Lookup(records, held=("88.118",)))  # fmt: skip
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 1 and ancestor.asked == []


def test_without_ancestor_nothing_is_an_empty_non_terminal():
    q = dns.message.make_query("88." + APEX, "TXT")
    assert_negative(dns.message.from_wire(respond(q.to_wire(), ZONE, Lookup(), now=NOW)),
                    dns.rcode.NXDOMAIN)  # fmt: skip


# -- parse / finish (the halves a server awaits between) and outcomes ---------------------------


def test_parse_then_finish_is_respond():
    for qname, qtype in [(name_of(SN), "TXT"), (name_of(SN), "URI"), (name_of("88.118.8/NOPE"),
                         "TXT"), ("88." + APEX, "TXT"), (APEX, "SOA"), ("x.example.", "TXT")]:
        wire = dns.message.make_query(qname, qtype, use_edns=0).to_wire()
        lookup, held = Lookup(), Held(SERVED)
        expected = respond(wire, ZONE, lookup, now=NOW, ancestor=held)
        pending = parse(wire, ZONE)
        if isinstance(pending, Pending):
            found = lookup(pending.key) if pending.key is not None else None
            got = finish(pending, found, now=NOW, ancestor=held)
        else:
            got = pending
        assert got == expected, (qname, qtype)


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.name)
def test_every_outcome_finishes_with_its_rcode(outcome):
    from resolver.protocols.dns.codes import RCODE_FOR

    wire = dns.message.make_query(name_of(SN), "TXT").to_wire()
    pending = parse(wire, ZONE)
    assert isinstance(pending, Pending) and pending.key == SN.upper()
    r = dns.message.from_wire(finish(pending, outcome, now=NOW))
    if RCODE_FOR[outcome] == dns.rcode.NXDOMAIN:
        assert_negative(r, dns.rcode.NXDOMAIN)  # with AA and the SOA, as a miss
    elif outcome is Outcome.VALUES_NOT_FOUND:
        assert_negative(r, dns.rcode.NOERROR)  # NODATA
    else:
        assert r.rcode() == RCODE_FOR[outcome] and r.answer == []


def test_lookup_errors_answer_their_outcomes_rcode():
    def invalid(key):
        raise InvalidIdentifier("no")

    _, r = ask(name_of(SN), lookup=invalid)
    assert r.rcode() == dns.rcode.NXDOMAIN


# -- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", ["TXT", "URI", "NAPTR", "ANY"])
def test_found_answers_carry_the_values_rrsets(qtype):
    lookup = Lookup()
    q, r = ask(name_of(SN), qtype, lookup=lookup)
    expected = rrsets_for(RECORDS[SN], dns.rdatatype.from_text(qtype), now=NOW)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    (rrset,) = r.answer
    assert rrset.name == q.question[0].name and rrset.rdclass == dns.rdataclass.IN
    assert rrset.rdtype == expected[0].rtype  # ANY → the TXT RRset (RFC 8482)
    assert rrset.ttl == expected[0].ttl
    assert rdatas(rrset) == [rr.rdata for rr in expected]
    assert r.authority == [] and r.additional == [] and lookup.calls == [SN]


def test_found_answers_read_as_the_values():
    _, r = ask(name_of(SN), "URI")
    (rrset,) = r.answer
    assert [rd.target.decode() for rd in rrset] == [
        "https://example.test/sn/1", "https://mirror.test/sn/1"]
    assert rrset.ttl == 300  # min(600, absolute expiry − now)
    _, r = ask(name_of(SN), "TXT")
    texts = [b"".join(rd.strings).decode() for rd in r.answer[0]]
    assert texts == ["type=URL;index=1;data=https://example.test/sn/1",
                     "type=EMAIL;index=2;data=ops@example.test",
                     "type=URL;index=4;data=https://mirror.test/sn/1"]  # fmt: skip


@pytest.mark.parametrize("identifier, qtype", [
    (SN, "A"), (SN, "AAAA"), (SN, "SOA"), (SN, "NS"), (SN, "TYPE65000"),
    ("88.118.8/PRIVATE", "TXT"), ("88.118.8/PRIVATE", "ANY"),  # nothing public
    ("88.118.8/NOURL", "URI"), ("88.118.8/NOURL", "NAPTR"),  # no URL value
])  # fmt: skip
def test_existing_name_without_the_type_is_nodata(identifier, qtype):
    _, r = ask(name_of(identifier), qtype)
    assert_negative(r, dns.rcode.NOERROR)


def test_lookup_gets_the_canonical_key_in_both_case_modes():
    lookup = Lookup()
    ask("Sn-2026-0001.8.118.88.ID.idnode.test.", lookup=lookup)
    assert lookup.calls == [SN]
    cs = Zone(apex=APEX, case_sensitive=True, mname=ZONE.mname, rname=ZONE.rname, ns=ZONE.ns)
    lookup = Lookup(records={"88.118.8/SN-1": RECORDS[SN], "88.118.8/sn-1": ()})
    _, r = ask("uc--sn-1.8.118.88." + APEX, zone=cs, lookup=lookup)
    _, r2 = ask("sn-1.8.118.88." + APEX, zone=cs, lookup=lookup)
    assert lookup.calls == ["88.118.8/SN-1", "88.118.8/sn-1"]
    assert len(r.answer[0]) == 3 and r2.answer == [] and r2.rcode() == dns.rcode.NOERROR


def test_qname_case_is_preserved():
    qname = "sN-2026-0001.8.118.88.Id.IDNODE.tEsT."
    for qtype in ("TXT", "A"):
        q, r = ask(qname, qtype)
        wire = respond(q.to_wire(), ZONE, Lookup(), now=NOW)
        qsection = q.to_wire()[12 : 12 + len(QUESTION)]
        assert wire[12 : 12 + len(QUESTION)] == qsection  # the question, byte for byte
        assert r.question[0].name.to_text() == qname
        for rrset in r.answer:
            assert rrset.name.to_text() == qname


def test_other_apex_and_root_apex():
    zone = Zone(apex="ons.example", mname="ns.ons.example", rname="h.ons.example",
                ns=("ns.ons.example",))  # fmt: skip
    _, r = ask(to_dns_name(SN, "ons.example"), zone=zone)
    assert len(r.answer[0]) == 3
    _, r = ask(name_of(SN), zone=zone)
    assert r.rcode() == dns.rcode.REFUSED


# -- EDNS and sizes -----------------------------------------------------------------------------


def test_no_opt_in_no_opt_out():
    _, r = ask(name_of(SN))
    assert r.edns == -1 and r.opt is None


def test_opt_answered_with_our_payload_and_no_options():
    cookie = dns.edns.CookieOption(b"\x01" * 8, b"")
    pad = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\0" * 16)
    _, r = ask(name_of(SN), use_edns=0, payload=4096, options=[cookie, pad], max_udp=1400)
    assert (r.edns, r.payload, r.options) == (0, 1400, ())
    assert not r.ednsflags & dns.flags.DO


def test_do_bit_copied():  # RFC 3225 §3
    _, r = ask(name_of(SN), use_edns=0, want_dnssec=True)
    assert r.ednsflags & dns.flags.DO


def test_unknown_edns_version_is_badvers():  # RFC 6891 §6.1.3
    lookup = Lookup()
    _, r = ask(name_of(SN), use_edns=1, lookup=lookup)
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0 and r.answer == []
    assert lookup.calls == []


BIG = "88.118.8/BIG"


def big_records(n: int, size: int = 100) -> dict[str, tuple[HandleValue, ...]]:
    return {BIG: tuple(V(i, "DESC", "x" * size) for i in range(1, n + 1))}


def full_size(lookup, **make_kw) -> int:
    q = dns.message.make_query(name_of(BIG), "TXT", **make_kw)
    wire = respond(q.to_wire(), ZONE, lookup, now=NOW, tcp=True)
    assert not dns.message.from_wire(wire).flags & dns.flags.TC
    return len(wire)


def assert_truncated(r, q):
    assert r.flags & dns.flags.TC and r.flags & dns.flags.AA and r.rcode() == dns.rcode.NOERROR
    assert r.question == q.question and r.answer == r.authority == r.additional == []


def most_that_fit(limit: int, size: int, **make_kw) -> int:
    """The largest n such that n values of ``size`` bytes answer in ≤ ``limit`` bytes."""
    n = 1
    while full_size(Lookup(big_records(n + 1, size)), **make_kw) <= limit:
        n += 1
    assert full_size(Lookup(big_records(n, size)), **make_kw) <= limit
    return n


@pytest.mark.parametrize("payload", [512, 700, 1232, 1400])
def test_truncation_exactly_at_the_limit(payload):
    # Values of 1 byte up to the limit, then the last one padded to hit it exactly (its TXT
    # text stays < 255 bytes, one string, so one more byte of data is one more byte of answer).
    n = most_that_fit(payload - 40, 1, use_edns=0)
    gap = payload - full_size(Lookup(big_records(n, 1)), use_edns=0)
    records = {BIG: (*big_records(n - 1, 1)[BIG], V(n, "DESC", "x" * (1 + gap)))}
    lookup = Lookup(records)
    assert full_size(lookup, use_edns=0) == payload
    fits = dns.message.make_query(name_of(BIG), "TXT", use_edns=0, payload=payload)
    r = dns.message.from_wire(respond(fits.to_wire(), ZONE, lookup, now=NOW, max_udp=payload))
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == n
    if payload > 512:  # one byte less from the client (below 512 counts as 512)
        short = dns.message.make_query(name_of(BIG), "TXT", use_edns=0, payload=payload - 1)
        wire = respond(short.to_wire(), ZONE, lookup, now=NOW, max_udp=1400)
        assert_truncated(dns.message.from_wire(wire), short)
        # and the server's own limit binds the same way when the client offers more
        wire = respond(fits.to_wire(), ZONE, lookup, now=NOW, max_udp=payload - 1)
        assert_truncated(dns.message.from_wire(wire), fits)


@pytest.mark.parametrize("make_kw, max_udp, limit", [
    ({}, 1232, 512),  # no EDNS: RFC 1035 §4.2.1
    ({}, 4096, 512),
    ({"use_edns": 0, "payload": 100}, 1232, 512),  # below 512 counts as 512 (RFC 6891 §6.2.5)
    ({"use_edns": 0, "payload": 800}, 1232, 800),  # the client's smaller buffer
    ({"use_edns": 0, "payload": 4096}, 1232, 1232),  # our max_udp
    ({"use_edns": 0, "payload": 4096}, 4096, 4096),
    ({"use_edns": 0, "payload": 65535}, 2000, 2000),
])  # fmt: skip
def test_udp_limits(make_kw, max_udp, limit):
    n = most_that_fit(limit, 100, **make_kw)
    for values, truncated in ((n, False), (n + 1, True)):
        lookup = Lookup(big_records(values))
        q = dns.message.make_query(name_of(BIG), "TXT", **make_kw)
        wire = respond(q.to_wire(), ZONE, lookup, now=NOW, max_udp=max_udp)
        r = dns.message.from_wire(wire)
        assert len(wire) <= limit
        if truncated:
            assert_truncated(r, q)
            assert r.edns == q.edns  # OPT kept in a truncated answer
        else:
            assert not r.flags & dns.flags.TC and len(r.answer[0]) == values
        # the same query over TCP: everything
        tcp = dns.message.from_wire(respond(q.to_wire(), ZONE, lookup, now=NOW, tcp=True))
        assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == values


def test_negative_answers_truncate_too_when_the_soa_does_not_fit():
    long, other = (".".join([c * 60] * 4) + "." for c in "ab")  # 245 octets each, no
    zone = Zone(apex=APEX, mname=long, rname=other, ns=("ns1.id.idnode.test.",))  # shared suffix
    q, r = ask(name_of("88.118.8/NOPE"), zone=zone)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.TC and r.authority == []
    _, r = ask(name_of("88.118.8/NOPE"), zone=zone, tcp=True)
    assert not r.flags & dns.flags.TC and soa_of(r.authority[0])[1] == long


def test_answer_beyond_65535_is_truncated_even_over_tcp():
    lookup = Lookup(big_records(300, 240))  # ~75 KB of TXT
    q = dns.message.make_query(name_of(BIG), "TXT")
    wire = respond(q.to_wire(), ZONE, lookup, now=NOW, tcp=True)
    assert_truncated(dns.message.from_wire(wire), q)


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"apex": "bad apex."}, {"apex": ""}, {"ns": ()}, {"mname": "a..b."},
    {"rname": ("x" * 64) + ".test."}, {"ns": ("ok.test.", "a" * 300)},
    {"serial": -1}, {"serial": 2**32}, {"minimum": 2**32}, {"ttl": 2**31}, {"ttl": -1},
])  # fmt: skip
def test_zone_rejects_bad_configuration(change):
    fields = dict(apex=APEX, mname="ns1.x.test.", rname="h.x.test.", ns=("ns1.x.test.",))
    with pytest.raises(ValueError):
        Zone(**(fields | change))


@pytest.mark.parametrize("max_udp", [511, 65536, 0])
def test_max_udp_bounds(max_udp):
    q = dns.message.make_query(name_of(SN), "TXT")
    with pytest.raises(ValueError):
        respond(q.to_wire(), ZONE, Lookup(), now=NOW, max_udp=max_udp)


# -- fuzz ---------------------------------------------------------------------------------------


def check_never_raises(packet: bytes, tcp: bool = False) -> None:
    lookup = Lookup(RECORDS | big_records(12))
    wire = respond(packet, ZONE, lookup, now=NOW, tcp=tcp)
    assert isinstance(wire, bytes)
    if not wire:
        assert len(packet) < 12 or packet[2] & 0x80  # only short packets and responses drop
        return
    r = dns.message.from_wire(wire)
    assert r.id == int.from_bytes(packet[:2], "big") and r.flags & dns.flags.QR
    assert len(wire) <= (65535 if tcp else 1232)
    assert len(lookup.calls) <= 1


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.booleans())
def test_fuzz_random_bytes(packet, tcp):
    check_never_raises(packet, tcp)


def _base_queries() -> list[bytes]:
    out = []
    names = [name_of(SN), name_of(BIG), name_of("88.118.8/NOPE"), name_of("20.500/X"), APEX,
             "example.com.", "sb--ga.8.118.88." + APEX]  # fmt: skip
    for i, name in enumerate(names):
        for qtype in ("TXT", "URI", "NAPTR", "ANY", "SOA", "A"):
            kw = {"use_edns": 0, "payload": 512 + 300 * i} if i % 2 else {}
            out.append(dns.message.make_query(name, qtype, **kw).to_wire())
    return out


BASE = _base_queries()
mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 400), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 400), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 400), st.integers(1, 8)),
    st.tuples(st.just("cut"), st.integers(0, 400), st.just(0)),
)


def mutate(packet: bytes, ops) -> bytes:
    b = bytearray(packet)
    for op, pos, arg in ops:
        pos = pos % (len(b) + 1)
        if op == "set" and pos < len(b):
            b[pos] = arg
        elif op == "insert":
            b[pos:pos] = arg
        elif op == "delete":
            del b[pos : pos + arg]
        elif op == "cut":
            del b[pos:]
    return bytes(b)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BASE), st.lists(mutation, min_size=1, max_size=4), st.booleans())
def test_fuzz_mutated_queries(packet, ops, tcp):
    check_never_raises(mutate(packet, ops), tcp)


def test_unmutated_base_queries_all_answer():
    for packet in BASE:
        r = dns.message.from_wire(respond(packet, ZONE, Lookup(), now=NOW))
        assert r.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED)


def test_data_not_held_here_is_answered_without_aa():
    wire = dns.message.make_query(name_of(SN), "TXT").to_wire()
    pending = parse(wire, ZONE)
    assert isinstance(pending, Pending)
    r = dns.message.from_wire(finish(pending, RECORDS[SN], now=NOW, authoritative=False))
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 1 and not r.flags & dns.flags.AA
    pending = parse(wire, ZONE)
    r = dns.message.from_wire(finish(pending, None, now=NOW, authoritative=False))
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.flags & dns.flags.AA
