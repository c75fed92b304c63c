"""The DNS fast path (``native.dns_answer``, ``DnsZone``, ``UdpPump`` in DNS mode; issue 6 §4).

The general path, ``resolver.protocols.dns.responder.respond`` over the store's lookup, is the
judge: for every query below both twins must give the same result, and when they answer (not
None) exactly the bytes ``respond`` gives.  Real LMDB stores hold records of many value shapes
(private values, absolute and relative TTLs, binary data, control characters, ';' in types,
non-ASCII, TXT texts over 255, 512, 1232 and 4096 bytes, URLs with '!', invalid URIs, many
URLs, hand-packed records with duplicate indexes, odd TTL types and corrupt framing); queries
come from dnspython (``make_query``) and by hand, with and without EDNS, every payload size,
DO, RD, CD, 0x20 mixed case, over TCP and UDP.  A coverage check makes sure the common cases
really are answered by the fast path.  Fuzzing: mutated and random packets, and mutated stored
records, never raise and the twins agree.  Then the pump: DNS mode on a real 127.0.0.1 socket
with dnspython as the client, and ``hand_back``.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import threading
import time
from collections import Counter

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import native
from native import _hotpath_py as python_twin
from native import constants as NC
from resolver.identifier import Identifier
from resolver.protocols.dns import answers, mapping, responder
from resolver.protocols.dns.responder import NOT_HELD, Zone, respond
from resolver.protocols.handle import constants as HC
from resolver.protocols.handle.message import Envelope, Header, Message, ResolutionRequest
from resolver.record import DIRENTRY, HEADER, Record, pack, unpack
from resolver.store import Change
from resolver.store.lmdb_store import LmdbStore
from resolver.values import TTL_ABSOLUTE, HandleValue, encode_value

NOW = 1_700_000_000
PUBLIC, PRIVATE = 0x0E, 0x0C
APEX = "id.idnode.test."


def twins() -> list:
    return [python_twin] + ([native.cython_twin] if native.cython_twin is not None else [])


def test_the_cython_twin_is_tested_when_extensions_are_on():
    assert native.cython_twin is not None or native.NO_EXTENSIONS
    assert native.dns_answer is (native.cython_twin or python_twin).dns_answer


def V(index, vtype, data, perms=PUBLIC, **kw) -> HandleValue:
    return HandleValue(index, vtype, data.encode() if isinstance(data, str) else data,
                       permissions=perms, **kw)  # fmt: skip


def raw_pack(values, directory_order=None) -> bytes:
    """``resolver.record.pack`` without ``validate`` (duplicate indexes, odd TTL types…), the
    directory optionally in another order than the wire section."""
    wires = [encode_value(v) for v in values]
    offsets, off = [], 4
    for w in wires:
        offsets.append((off, len(w)))
        off += len(w)
    order = directory_order or range(len(values))
    directory = [DIRENTRY.pack(offsets[i][0], offsets[i][1], 1, 2) for i in order]
    wire = struct.pack(">i", len(directory)) + b"".join(wires)
    js = b"[{}]"
    return HEADER.pack(1, 0, len(directory), len(wire), len(js)) + b"".join(directory) + wire + js


URLS = [
    "https://example.test/a",
    "https://example.test/bang!x!",  # '!' escaped in the NAPTR regexp
    "not a uri",
    "mailto:ops@example.test",
    "https://例え.test/パス?q=é",  # IRI: percent-encoded
    "1http://digit-first.test/",
    "http:",  # nothing after the scheme
    "https://x.test/%zz",  # bad percent-encoding
    "https://x.test/%4",
    "https://x.test/%4a%C3%A9",
    "/relative/path",
    "https://x.test/a b",
    "https://x.test/tab\tinside",
    "urn:isbn:0451450523",
    "https://x.test/\u0085c1",  # a C1 control
    "a+b.c-d:rest",
    "https://x.test/" + "n" * 240,  # URI RR, but a regexp > 255: no NAPTR
    "https://x.test/" + "!" * 120,  # fits as URI, regexp over 255 once escaped
]

BIG = "设备-" * 200  # 1400 bytes of UTF-8: strings cut between sequences


def records() -> dict[str, list[HandleValue]]:
    return {
        "88.118.8/sn-1": [
            V(1, "URL", "https://example.test/sn/1", ttl=600),
            V(2, "EMAIL", "ops@example.test", ttl=900),
            V(3, "SECRET", "hidden", PRIVATE),
            V(4, "URL", "https://mirror.test/sn/1!", ttl=NOW + 300, ttl_type=TTL_ABSOLUTE),
            V(5, "DESC", "温州工厂 αβγ"),
        ],
        "88.118.8/shapes": [
            V(1, "A;B", "semicolon in the type"),
            V(2, "T\x01", "control in the type"),
            V(3, "T\u0085", "C1 in the type"),
            V(4, "类型", "non-ASCII type"),
            V(5, "BIN", bytes(range(256))),
            V(6, "DEL", "del\x7fchar"),
            V(7, "C1", "c1\u0080char"),
            V(8, "BAD", b"\xff\xfe not utf-8"),
            V(9, "EQ", "a=b;c=d;e"),
            V(10, "EMPTY", b""),
            V(11, "PW", "public read only", 0x02),
            V(12, "NEG", "negative ttl", ttl=-5),
            V(13, "MAX", "max ttl", ttl=0x7FFFFFFF),
            V(14, "PAST", "expired", ttl=NOW - 10, ttl_type=TTL_ABSOLUTE),
            V(15, "OVERLONG", b"\xc0\xaf"),
            V(16, "SURROGATE", b"\xed\xa0\x80"),
            V(17, "TRUNC", b"ok\xe8\xae"),
        ],
        "88.118.8/urls": [V(i + 1, "URL" if i % 3 else "url", u, ttl=3600 - i)
                          for i, u in enumerate(URLS)] + [V(50, "URLX", "https://n.test/"),
                                                          V(51, "Url", "https://y.test/")],
        "88.118.8/long-300": [V(1, "DESC", BIG[:100] + "x" * 200)],
        "88.118.8/long-600": [V(1, "DESC", "y" * 300), V(2, "DESC", BIG[:100])],
        "88.118.8/long-2k": [V(1, "DESC", BIG)],
        "88.118.8/long-5k": [V(i, "DESC", BIG) for i in range(1, 5)],
        "88.118.8/huge": [V(1, "DESC", "h" * 70000), V(2, "URL", "https://x.test/" + "u" * 65000),
                          V(3, "URL", "https://small.test/")],
        "88.118.8/many": [V(i, "URL", f"https://many.test/{i}", ttl=1000 + i)
                          for i in range(1, 101)],
        "88.118.8/over-64k": [V(i, "DESC", "z" * 1000) for i in range(1, 71)],
        "88.118.8/private": [V(1, "URL", "https://x.test/", PRIVATE)],
        "88.118.8/empty": [],
        "88.118.8/no-url": [V(1, "EMAIL", "a@b.test")],
        "88.118.8/bad-urls": [V(1, "URL", "not a uri"), V(2, "EMAIL", "x")],
        "88.118.8/SN_1": [V(1, "URL", "https://x.test/underscore")],  # sb-- name: general path
        "88.118.8/a": [V(1, "URL", "https://x.test/one-letter")],
        "99/one": [V(1, "URL", "https://x.test/99")],
        "abc.def/item-7": [V(7, "URL", "https://x.test/abc")],
        "77.1/not-held": [V(1, "URL", "https://x.test/77")],
    }


RAW = {  # hand-packed: shapes Record.validate refuses, and corrupt framing
    "88.118.8/dup-index": raw_pack([V(1, "A", "x"), V(1, "B", "y")]),
    "88.118.8/dup-same": raw_pack([V(1, "URL", "https://d.test/")] * 2),
    "88.118.8/dup-private": raw_pack([V(1, "A", "x"), V(1, "B", "y", PRIVATE)]),
    "88.118.8/unsorted": raw_pack([V(5, "URL", "https://u.test/5"), V(2, "URL", "https://u/2")]),
    "88.118.8/reversed": raw_pack([V(1, "URL", "https://r.test/1"), V(2, "URL", "https://r/2")],
                                  [1, 0]),  # fmt: skip
    "88.118.8/shared": raw_pack([V(1, "URL", "https://s.test/")], [0, 0]),
    "88.118.8/odd-ttl": raw_pack([V(1, "URL", "https://t.test/", ttl=NOW + 50, ttl_type=2),
                                  V(-3, "NEG", "negative index", ttl=0),
                                  V(0, "ZERO", "zero index")]),  # fmt: skip
    "88.118.8/refs": raw_pack([V(1, "URL", "https://ref.test/", references=(("88.118.8/x", 1),))]),
    "88.118.8/bad-ref": raw_pack([V(1, "URL", "https://ref.test/", references=(("ok", 1),))]
                                 ).replace(b"\x02ok", b"\x02\xff\xfe"),  # fmt: skip
    "88.118.8/bad-type": raw_pack([V(1, "URL", "https://t.test/")]).replace(b"URL", b"\xffRL"),
    "88.118.8/bad-version": b"\x02" + pack(Record([V(1, "URL", "https://v.test/")]))[1:],
    "88.118.8/truncated": pack(Record([V(1, "URL", "https://v.test/")]))[:-3],
    "88.118.8/bad-count": (lambda b: b[:44] + b"\0\0\0\x05" + b[48:])(
        pack(Record([V(1, "URL", "https://c.test/"), V(2, "URL", "https://c.test/2")]))),
    "88.118.8/short": b"\x01",
}

PREFIXES = ["88.118.8", "99", "abc.def"]


def build_store(path, case_sensitive: bool) -> LmdbStore:
    store = LmdbStore(path, map_size=256 << 20)
    changes = [Change(p.upper().encode(), pack(Record([V(100, "HS_ADMIN", b"admin")])),
                      prefix=True) for p in PREFIXES]  # fmt: skip
    recs = records()
    if case_sensitive:
        recs = {"88.118.8/sn-lower": recs["88.118.8/sn-1"], "88.118.8/SN-UPPER": [V(1, "A", "u")],
                "88.118.8/MiXed": [V(1, "A", "m")], "99/one": recs["99/one"]}  # fmt: skip
    for handle, values in recs.items():
        changes.append(Change(Identifier.parse(handle, case_sensitive=case_sensitive).key,
                              pack(Record(values))))  # fmt: skip
    if not case_sensitive:
        for handle, blob in RAW.items():
            changes.append(Change(Identifier.parse(handle).key, blob))
    store.write(changes)
    return store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    made = {cs: build_store(tmp_path_factory.mktemp(f"dns-{cs}"), cs) for cs in (False, True)}
    yield made
    for s in made.values():
        s.close()


# -- the judge ---------------------------------------------------------------------------------


def store_lookup(store, txn):
    """The server's lookup (issue 6): prefix not held → NOT_HELD, no record → None, else the
    record's values (``unpack`` raises CorruptRecord, which respond answers SERVFAIL)."""

    def lookup(key_text: str):
        key = key_text.encode("utf-8")
        if txn.get(key.partition(b"/")[0], db=store.prefixes_db) is None:
            return NOT_HELD
        blob = txn.get(key, db=store.records_db)
        return None if blob is None else tuple(unpack(bytes(blob)))

    return lookup


ZONES = {  # name: (apex text, case sensitive, max_udp)
    "default": (APEX, False, 1232),
    "wide": (APEX, False, 4096),
    "root": (".", False, 512),
    "odd-apex": ("Dns_1.Example.", False, 1232),
    "cs": (APEX, True, 1232),
}


def general_zone(name: str) -> Zone:
    apex, cs, _ = ZONES[name]
    ns = "ns1.example.net."
    return Zone(apex=apex, case_sensitive=cs, mname=ns, rname="hostmaster.example.net.", ns=(ns,))


def fast_zone(twin, name: str):
    apex, cs, max_udp = ZONES[name]
    return twin.DnsZone(dns.name.from_text(apex).to_wire(), cs, max_udp)


class Judge:
    """Asks both twins and, when they answer, the general path; counts what was answered."""

    def __init__(self, stores):
        self.stores = stores
        self.answered: Counter = Counter()
        self.asked = 0

    def check(self, query: bytes, zone: str, *, tcp: bool = False, now: int = NOW, txn=None,
              held=None, caches=None) -> bytes | None:  # fmt: skip
        store = self.stores[ZONES[zone][1]]
        own_txn = txn is None
        txn = store.read() if own_txn else txn
        try:
            results = []
            for i, twin in enumerate(twins()):
                cache = caches[i] if caches else None
                results.append(twin.dns_answer(query, txn, store.records_db, store.prefixes_db,
                                               fast_zone(twin, zone), now, tcp, held, cache))
            assert all(r == results[0] for r in results), query
            fast = results[0]
            self.asked += 1
            if fast is not None:
                general = respond(query, general_zone(zone), store_lookup(store, txn), now=now,
                                  max_udp=ZONES[zone][2], tcp=tcp)  # fmt: skip
                assert fast == general, (query, fast, general)
                self.count(query, fast)
            return fast
        finally:
            if own_txn:
                txn.abort()

    def count(self, query: bytes, fast: bytes) -> None:
        msg = dns.message.from_wire(fast)
        qtype = dns.rdatatype.to_text(msg.question[0].rdtype)
        self.answered[(qtype, msg.edns >= 0, bool(msg.flags & dns.flags.TC))] += 1


@pytest.fixture(scope="module")
def judge(stores):
    return Judge(stores)


def name_of(identifier: str, zone: str = "default") -> str:
    apex, cs, _ = ZONES[zone]
    return mapping.to_dns_name(identifier, apex, case_sensitive=cs)


def mixed_case(query: bytes, rng: random.Random) -> bytes:
    """0x20: letters of the QNAME in random case (the question stays a valid one)."""
    out = bytearray(query)
    p = 12
    while out[p]:
        for i in range(p + 1, p + 1 + out[p]):
            if chr(out[i]).isalpha() and rng.random() < 0.5:
                out[i] ^= 0x20
        p += 1 + out[p]
    return bytes(out)


EDNS = [  # make_query keywords
    {},
    {"use_edns": 0},
    {"use_edns": 0, "payload": 0},
    {"use_edns": 0, "payload": 512},
    {"use_edns": 0, "payload": 1232},
    {"use_edns": 0, "payload": 4096},
    {"use_edns": 0, "payload": 65535},
    {"use_edns": 0, "payload": 1232, "want_dnssec": True},
]


def query(qname: str, qtype="TXT", rdclass="IN", *, qid=0x4D2, flags=None, **kw) -> bytes:
    q = dns.message.make_query(qname, qtype, rdclass, **kw)
    q.id = qid
    if flags is not None:
        q.flags = flags
    return q.to_wire()


# -- the matrix --------------------------------------------------------------------------------

IDENTIFIERS = sorted(records()) + sorted(RAW) + ["88.118.8/nothere", "66.6/nowhere"]
QTYPES = ["TXT", "URI", "NAPTR", "ANY", "A", "SOA"]


def test_every_record_every_type_both_transports(judge):
    rng = random.Random(61)
    for ident in IDENTIFIERS:
        for qtype in QTYPES:
            for tcp in (False, True):
                for kw in rng.sample(EDNS, 2):
                    judge.check(query(name_of(ident), qtype, **kw), rng.choice(("default", "wide")),
                                tcp=tcp)  # fmt: skip


def test_flags_and_mixed_case(judge):
    rng = random.Random(62)
    qflags = [0, dns.flags.RD, dns.flags.CD, dns.flags.RD | dns.flags.CD | dns.flags.AD,
              dns.flags.AA | dns.flags.RA | 0x0040 | 0x000F]  # Z bit, an RCODE in a query
    for ident in ("88.118.8/sn-1", "88.118.8/urls", "88.118.8/long-600", "99/one"):
        for qtype in ("TXT", "URI", "NAPTR"):
            for fl in qflags:
                kw = rng.choice(EDNS)
                q = mixed_case(query(name_of(ident), qtype, flags=fl, qid=rng.randrange(65536),
                                     **kw), rng)  # fmt: skip
                answer = judge.check(q, "default", tcp=rng.random() < 0.3)
                if ident != "88.118.8/long-600":
                    assert answer is not None
                    assert answer[12 : 12 + len(q) - 12 - (11 if kw else 0)] == \
                        q[12 : len(q) - (11 if kw else 0)], "the question echoed in its case"


def test_other_zones(judge):
    rng = random.Random(63)
    for zone in ("root", "odd-apex"):
        for ident in ("88.118.8/sn-1", "88.118.8/urls", "99/one", "abc.def/item-7",
                      "88.118.8/long-600", "88.118.8/nothere"):  # fmt: skip
            for qtype in ("TXT", "URI", "NAPTR"):
                for kw in rng.sample(EDNS, 3):
                    q = mixed_case(query(name_of(ident, zone), qtype, **kw), rng)
                    answer = judge.check(q, zone, tcp=rng.random() < 0.3)
                    if ident == "88.118.8/sn-1":
                        assert answer is not None
        # outside the apex, the apex itself, one label under it
        for qname in ("example.com.", "id.idnode.test.", "88.id.idnode.test.", "a.99.test."):
            judge.check(query(qname, "TXT"), zone)


def test_case_sensitive_zone(judge):
    rng = random.Random(64)
    for ident in ("88.118.8/sn-lower", "88.118.8/SN-UPPER", "88.118.8/MiXed", "99/one"):
        for qtype in ("TXT", "URI", "NAPTR"):
            for kw in rng.sample(EDNS, 3):
                q = mixed_case(query(name_of(ident, "cs"), qtype, **kw), rng)
                answer = judge.check(q, "cs", tcp=rng.random() < 0.3)
                if ident in ("88.118.8/sn-lower", "99/one"):
                    assert answer is not None  # the suffix key in lower case, as the label
                if ident in ("88.118.8/SN-UPPER", "88.118.8/MiXed"):
                    assert answer is None  # uc-- / sb-- names: the general path's


def test_the_common_cases_are_answered_by_the_fast_path(judge):
    """Not vacuous: TXT, URI and NAPTR hits, with and without EDNS, and truncation each happen."""
    sn = name_of("88.118.8/sn-1")
    for qtype in ("TXT", "URI", "NAPTR"):
        for kw in ({}, {"use_edns": 0}, {"use_edns": 0, "payload": 4096, "want_dnssec": True}):
            for tcp in (False, True):
                assert judge.check(query(sn, qtype, **kw), "default", tcp=tcp) is not None
    many = name_of("88.118.8/many")
    for qtype in ("URI", "NAPTR"):
        for kw in ({}, {"use_edns": 0}):
            tc = dns.message.from_wire(judge.check(query(many, qtype, **kw), "default"))
            assert tc.flags & dns.flags.TC and not tc.answer
            full = dns.message.from_wire(judge.check(query(many, qtype, **kw), "default",
                                                     tcp=True))  # fmt: skip
            assert not full.flags & dns.flags.TC and len(full.answer[0]) == 100
    for ident, edns, limit in (("long-600", {}, 512), ("long-2k", {"use_edns": 0}, 1232)):
        q = query(name_of("88.118.8/" + ident), "TXT", **edns)
        tc = dns.message.from_wire(judge.check(q, "default"))
        assert tc.flags & dns.flags.TC and tc.flags & dns.flags.AA
        assert len(judge.check(q, "default", tcp=True)) > limit
    # more than a TCP message holds: TC over TCP too, as the general path does
    tc = dns.message.from_wire(judge.check(query(name_of("88.118.8/over-64k"), "TXT"), "default",
                                           tcp=True))  # fmt: skip
    assert tc.flags & dns.flags.TC and not tc.answer
    for qtype in ("TXT", "URI", "NAPTR"):
        for edns in (False, True):
            for tc in (False, True):
                assert judge.answered[(qtype, edns, tc)] > 0, (qtype, edns, tc)


def test_the_answers_read_back(stores):
    """What the fast path sends parses and says what answers.rrsets_for says."""
    store = stores[False]
    with store.read() as txn:
        values = tuple(unpack(bytes(txn.get(Identifier.parse("88.118.8/urls").key,
                                            db=store.records_db))))  # fmt: skip
        for qtype, rtype in (("TXT", 16), ("URI", 256), ("NAPTR", 35)):
            out = native.dns_answer(query(name_of("88.118.8/urls"), qtype, use_edns=0), txn,
                                    store.records_db, store.prefixes_db,
                                    fast_zone(native, "wide"), NOW, True)  # fmt: skip
            msg = dns.message.from_wire(out)
            want = answers.rrsets_for(values, rtype, now=NOW)
            assert msg.flags & dns.flags.AA and msg.rcode() == dns.rcode.NOERROR
            assert [rd.to_wire() for rd in msg.answer[0]] == [rr.rdata for rr in want]
            assert msg.answer[0].ttl == want[0].ttl
            assert len(want) == {"TXT": 20, "URI": 10, "NAPTR": 8}[qtype]


def test_declined_shapes(stores, judge):
    """Every one of these is the general path's: the twins return None."""
    sn = name_of("88.118.8/sn-1")
    base = query(sn, "TXT")
    edns = query(sn, "TXT", use_edns=0)
    q = base[12:]  # the question
    hdr = base[:12]
    name_len = len(dns.name.from_text(sn).to_wire())
    opt = edns[len(base):]
    declined = {
        "response": base[:2] + bytes([base[2] | 0x80]) + base[3:],
        "opcode": base[:2] + bytes([base[2] | 0x10]) + base[3:],
        "tc": base[:2] + bytes([base[2] | 0x02]) + base[3:],
        "qd0": hdr[:4] + b"\0\0" + hdr[6:] + q,
        "qd2": hdr[:4] + b"\0\x02" + hdr[6:] + q + q,
        "an1": hdr[:6] + b"\0\x01" + hdr[8:] + q + b"\xc0\x0c\x00\x10\x00\x01\0\0\0\x05\0\x01\0",
        "ar2": edns[:11] + b"\x02" + edns[12:] + opt,
        "trailing": base + b"\0",
        "short": base[:-1],
        "compressed": hdr + b"\x02sn\xc0\x0c" + q[name_len:],
        "ext-label": hdr + b"\x41" + q[1:],
        "chaos": query(sn, "TXT", "CH"),
        "any": query(sn, "ANY"),
        "opt-v1": edns[:-5] + b"\x01" + edns[-4:],
        "opt-options": edns[:-2] + b"\x00\x04\x00\x0a\x00\x00",
        "opt-owner": edns[:-11] + b"\x01a\x00" + edns[-10:],
        "not-opt": edns[:-10] + b"\x00\x10" + edns[-8:],
        "na": query("x.na.0." + APEX, "TXT"),
        "sb": query(name_of("88.118.8/SN_1"), "TXT"),
        "dashes": query("ab--c.8.118.88." + APEX, "TXT"),
        "lead-dash": query("-a.8.118.88." + APEX, "TXT"),
        "tail-dash": query("a-.8.118.88." + APEX, "TXT"),
        "underscore": query("a_b.8.118.88." + APEX, "TXT"),
        "one-label": query("88." + APEX, "TXT"),
        "apex": query(APEX, "TXT"),
        "outside": query("sn-1.8.118.88.example.", "TXT"),
        "mid-label": query("sn-1.8.118.88.xid.idnode.test.", "TXT"),
        "miss": query(name_of("88.118.8/nothere"), "TXT"),
        "not-held": query(name_of("77.1/not-held"), "TXT"),
        "private": query(name_of("88.118.8/private"), "TXT"),
        "empty": query(name_of("88.118.8/empty"), "TXT"),
        "nodata-uri": query(name_of("88.118.8/no-url"), "URI"),
        "bad-urls": query(name_of("88.118.8/bad-urls"), "NAPTR"),
        "dup-index": query(name_of("88.118.8/dup-index"), "TXT"),
        "dup-same": query(name_of("88.118.8/dup-same"), "TXT"),
        "shared": query(name_of("88.118.8/shared"), "TXT"),
        "empty-message": b"",
        "header-only": hdr,
    }
    for raw in ("bad-ref", "bad-type", "bad-version", "truncated", "bad-count", "short"):
        for qtype in ("TXT", "URI", "NAPTR"):
            declined[f"{raw}-{qtype}"] = query(name_of("88.118.8/" + raw), qtype)
    for what, data in declined.items():
        assert judge.check(data, "default") is None, what
        assert judge.check(data, "default", tcp=True) is None, what
    # ... and these are answered, as the general path answers them
    for ident, qtype in [("dup-same", "URI"), ("dup-same", "NAPTR"), ("dup-private", "TXT"),
                         ("unsorted", "TXT"), ("unsorted", "URI"), ("reversed", "TXT"),
                         ("reversed", "NAPTR"), ("shared", "URI"), ("odd-ttl", "TXT"),
                         ("odd-ttl", "URI"), ("refs", "TXT"), ("refs", "NAPTR")]:
        assert judge.check(query(name_of("88.118.8/" + ident), qtype), "default"), ident
    # an OPT with an extended RCODE or other EDNS flag bits: only DO is copied
    for ext, fl in ((b"\xff", b"\x00\x00"), (b"\x00", b"\x7f\xff"), (b"\x01", b"\xff\xff")):
        answer = judge.check(edns[:-6] + ext + b"\x00" + fl + b"\x00\x00", "default")
        assert answer is not None and answer[-6:] == bytes([0, 0, fl[0] & 0x80, 0, 0, 0])


def test_long_names_and_label_limits(judge):
    label = "a" * 63
    for n in range(1, 4):
        qname = ".".join([label] * n) + ".8.118.88." + APEX
        judge.check(query(qname, "TXT"), "default")
    # a name of 255 octets exactly, and one octet over (by hand: dnspython refuses to build it)
    base = query(name_of("88.118.8/a"), "TXT")
    name = dns.name.from_text("8.118.88." + APEX).to_wire()
    for total in (255, 256):
        room = total - len(name)
        labels = b""
        while room > 0:
            size = min(63, room - 1)
            labels += bytes([size]) + b"b" * size
            room -= size + 1
        data = base[:12] + labels + name + b"\x00\x10\x00\x01"
        assert judge.check(data, "default") is None  # a miss, or too long


def test_ttls_follow_now(judge):
    """Absolute TTLs count from ``now``; the RRset carries the minimum, clamped at 0."""
    q = query(name_of("88.118.8/sn-1"), "URI")
    for now in (NOW, NOW + 299, NOW + 300, NOW + 10**6, 0, -(1 << 40), 1 << 40):
        out = judge.check(q, "default", now=now)
        assert dns.message.from_wire(out).answer[0].ttl == max(0, min(600, NOW + 300 - now))
    for twin in twins():
        with pytest.raises(OverflowError):
            twin.dns_answer(q, None, None, None, fast_zone(twin, "default"), 1 << 63)
        with pytest.raises(OverflowError):
            twin.dns_answer(q, None, None, None, fast_zone(twin, "default"), -(1 << 62) - 1)


def test_held_and_cache_give_the_same_answers(stores, judge):
    store = stores[False]
    qs = [query(name_of(i), t, **kw) for i in ("88.118.8/sn-1", "99/one", "abc.def/item-7",
                                                 "88.118.8/urls", "77.1/not-held", "88.118.8/x")
          for t in ("TXT", "URI") for kw in ({}, {"use_edns": 0})]  # fmt: skip
    with store.read() as txn:
        plain = [judge.check(q, "default", txn=txn) for q in qs]
        caches = [t.RecordCache(1 << 20, store.changes_db) for t in twins()]
        for c in caches:
            c.sync(txn)
        for _ in range(2):  # cold, then warm
            held = [None]
            assert [judge.check(q, "default", txn=txn, held=held, caches=caches)
                    for q in qs] == plain  # fmt: skip
        assert all(len(c) > 0 for c in caches)
    assert sum(a is not None for a in plain) == 16


def test_query_as_bytearray_or_memoryview(stores):
    store = stores[False]
    q = query(name_of("88.118.8/sn-1"), "TXT")
    with store.read() as txn:
        for twin in twins():
            z = fast_zone(twin, "default")
            want = twin.dns_answer(q, txn, store.records_db, store.prefixes_db, z, NOW)
            assert want is not None
            for form in (bytearray(q), memoryview(q)):
                assert twin.dns_answer(form, txn, store.records_db, store.prefixes_db, z,
                                       NOW) == want  # fmt: skip


# -- DnsZone -----------------------------------------------------------------------------------


@pytest.mark.parametrize("apex", [
    b"", b"\x02id", b"\x02id\x00\x00", b"\x40" + b"a" * 64 + b"\x00", b"\x03a.b\x00",
    b"\x02i d\x00", b"\x00\x00", b"\x05ab\x00", (b"\x3f" + b"a" * 63) * 4 + b"\x00",
])  # fmt: skip
def test_dns_zone_refuses_a_bad_apex(apex):
    for twin in twins():
        with pytest.raises(ValueError):
            twin.DnsZone(apex)


@pytest.mark.parametrize("max_udp", [511, 65536, 0, -1, True, 1232.0, "1232"])
def test_dns_zone_refuses_a_bad_max_udp(max_udp):
    for twin in twins():
        with pytest.raises(ValueError):
            twin.DnsZone(b"\x00", max_udp=max_udp)


def test_dns_zone_attributes():
    for twin in twins():
        z = twin.DnsZone(b"\x05Dns_1\x07EXAMPLE\x00", 1, 512)
        assert (z.apex_wire, z.case_sensitive, z.max_udp) == (b"\x05dns_1\x07example\x00", True,
                                                              512)  # fmt: skip
        z = twin.DnsZone(b"\x00")
        assert (z.apex_wire, z.case_sensitive, z.max_udp) == (b"\x00", False, 1232)
        with pytest.raises(TypeError):
            twin.DnsZone("id.idnode.test.")
    # the longest apex the mapping takes, and one octet more
    longest = (b"\x3f" + b"a" * 63) * 3 + b"\x39" + b"a" * 57 + b"\x00"
    assert len(longest) == NC.DNS_MAX_APEX
    text = dns.name.from_wire(longest, 0)[0].to_text()
    assert mapping.from_dns_name("x.y." + text, text) == "Y/X"
    too_long = b"\x01b" + longest
    with pytest.raises(ValueError):
        mapping.from_dns_name("x.", dns.name.from_wire(too_long, 0)[0].to_text())
    for twin in twins():
        assert twin.DnsZone(longest).apex_wire == longest
        with pytest.raises(ValueError):
            twin.DnsZone(too_long)


def test_constants_match_the_general_path():
    assert (NC.DNS_TXT, NC.DNS_URI, NC.DNS_NAPTR) == (answers.TXT, answers.URI, answers.NAPTR)
    assert NC.DNS_MAX_RDATA == answers.MAX_RDATA
    assert NC.DNS_MAX_TTL == answers.MAX_TTL
    assert NC.NAPTR_ORDER_BASE == answers.NAPTR_ORDER_BASE
    assert NC.NAPTR_PREFERENCE == answers.NAPTR_PREFERENCE
    assert (NC.DNS_MIN_UDP, NC.DNS_MAX_TCP) == (responder.MIN_UDP, responder.MAX_TCP)
    assert NC.DNS_MAX_NAME == mapping.MAX_NAME_WIRE
    assert NC.TTL_ABSOLUTE == TTL_ABSOLUTE
    assert NC.DNS_MAX_APEX == mapping.MAX_NAME_WIRE - 4  # mapping._apex's own bound


def test_the_key_is_what_mapping_reads(stores):
    """The key derivation (labels → P/S) against mapping.from_dns_name, on names the fast path
    answers: each hit's record is the one stored under from_dns_name's key."""
    rng = random.Random(65)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"
    for cs in (False, True):
        for _ in range(300):
            labels = []
            for _ in range(rng.randrange(2, 6)):
                n = rng.randrange(1, 12)
                label = "".join(rng.choice(alphabet) for _ in range(n)).strip("-") or "x"
                if label[2:4] == "--":
                    label = label.replace("-", "x")
                labels.append("".join(c.upper() if rng.random() < 0.3 else c for c in label))
            name = ".".join(labels) + "." + APEX
            key = mapping.from_dns_name(name, APEX, case_sensitive=cs)
            assert key is not None, name
            prefix = ".".join(reversed(labels[1:])).upper()
            suffix = labels[0].lower() if cs and prefix != "0.NA" else labels[0].upper()
            assert key == prefix + "/" + suffix


# -- fuzzing -----------------------------------------------------------------------------------


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(7)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 2:
            del b[rng.randrange(len(b) + 1):]
        elif op == 3:
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
        elif op == 4 and len(b) > 12:
            i = rng.randrange(12, len(b))
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
        elif op == 5 and len(b) >= 12:
            i = rng.choice((2, 3, 4, 5, 6, 7, 8, 9, 10, 11))
            b[i] = rng.choice((0, 1, 2, 0x80, 0xFF, b[i] ^ 0x20))
        elif op == 6 and len(b) > 12:
            b[-rng.randrange(1, min(12, len(b) - 11)) :] = b""
    return bytes(b)


def test_fuzz_queries(judge):
    """Mutated and random packets: no twin raises, they agree, and every answer is the
    general path's (Judge.check)."""
    rng = random.Random(66)
    seeds = [query(name_of(i), t, qid=rng.randrange(65536), **kw)
             for i in ("88.118.8/sn-1", "88.118.8/urls", "88.118.8/shapes", "99/one",
                       "88.118.8/long-600", "88.118.8/nothere")
             for t in ("TXT", "URI", "NAPTR") for kw in ({}, {"use_edns": 0, "payload": 600})]
    answered = 0
    store = judge.stores[False]
    with store.read() as txn:
        for i in range(3000):
            if i % 10 == 0:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
            else:
                data = _mutate(rng.choice(seeds), rng)
            answered += judge.check(data, "default", tcp=i % 7 == 0, txn=txn) is not None
    assert answered > 30  # mutations that keep a valid query (the id, case, …) are answered


_URI_PIECES = ["a", "Z", "0", "-", ".", "/", ":", "?", "#", "[", "]", "@", "!", "$", "&", "'",
               "(", "*", "+", ",", ";", "=", "~", "_", "%41", "%c3", "é", "设", "😀", "\u00a0"]
_BAD_PIECES = ["%", "%4", "%zz", " ", "\\", '"', "<", "^", "`", "{", "|", "\t", "\x7f", "\u0085",
               "\u2028", "\x00"]


def _random_text(rng: random.Random, n: int, bad: float = 0.3) -> str:
    return "".join(rng.choice(_BAD_PIECES if rng.random() < bad else _URI_PIECES)
                   for _ in range(n))  # fmt: skip


def _random_value(rng: random.Random, index: int) -> HandleValue:
    kind = rng.randrange(6)
    if kind < 3:  # URL-like
        vtype = rng.choice(["URL", "url", "uRl", "URL.X", "URI"])
        scheme = rng.choice(["https:", "https:", "h:", "a+b-c.d:", "1a:", ":", "", "é:"])
        data = (scheme + _random_text(rng, rng.randrange(0, 40), 0.01)).encode("utf-8")
    elif kind == 3:  # long text, multi-byte characters around the 255-byte cuts
        vtype = rng.choice(["DESC", "设备", "A;B", "T\x1f"])
        data = "".join(rng.choice("ab设😀é") for _ in range(rng.randrange(50, 400))).encode()
    elif kind == 4:
        vtype = _random_text(rng, rng.randrange(1, 6)).replace("\x00", "") or "T"
        data = _random_text(rng, rng.randrange(0, 30)).encode("utf-8")
    else:  # bytes, often not UTF-8
        vtype = "BIN"
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    perms = rng.choice([PUBLIC, PUBLIC, PUBLIC, PRIVATE, 0x02, 0x0F])
    if rng.random() < 0.3:
        return V(index, vtype, data, perms, ttl=NOW + rng.randrange(-100, 100),
                 ttl_type=TTL_ABSOLUTE)  # fmt: skip
    return V(index, vtype, data, perms, ttl=rng.randrange(-10, 1 << 31))


def test_random_values(tmp_path):
    """Generated records of mixed value shapes: every type's answer is the general path's."""
    rng = random.Random(68)
    store = LmdbStore(tmp_path / "random", map_size=64 << 20)
    try:
        changes = [Change(b"88.118.8", pack(Record([V(100, "HS_ADMIN", b"x")])), prefix=True)]
        for i in range(150):
            values = [_random_value(rng, j) for j in rng.sample(range(1, 40), rng.randrange(1, 9))]
            changes.append(Change(f"88.118.8/R-{i}".encode(), pack(Record(values))))
        store.write(changes)
        judge = Judge({False: store})
        answered = Counter()
        with store.read() as txn:
            for i in range(150):
                for qtype in ("TXT", "URI", "NAPTR"):
                    q = query(f"r-{i}.8.118.88.{APEX}", qtype, use_edns=0, payload=4096)
                    answered[qtype] += judge.check(q, "wide", txn=txn, tcp=True,
                                                   now=NOW + i % 3) is not None  # fmt: skip
        assert min(answered.values()) > 20, answered
    finally:
        store.close()


def test_fuzz_stored_records(tmp_path):
    """Mutated stored records: the fast path decodes exactly what unpack decodes, or declines."""
    rng = random.Random(67)
    store = LmdbStore(tmp_path / "fuzz", map_size=64 << 20)
    try:
        sources = [pack(Record(v)) for k, v in records().items()
                   if 0 < len(v) <= 20 and not k.startswith("77.")] + list(RAW.values())
        changes = [Change(b"88.118.8", pack(Record([V(100, "HS_ADMIN", b"x")])), prefix=True)]
        for i in range(400):
            blob = bytearray(rng.choice(sources))
            for _ in range(rng.randrange(1, 3)):
                if rng.random() < 0.5 and len(blob) > 12:  # in the header, directory or a length
                    pos = rng.randrange(min(len(blob), 12 + 16 * blob[3] + 40))
                else:
                    pos = rng.randrange(len(blob))
                blob[pos] = rng.choice((0, 1, 0xFF, 0x80, rng.randrange(256), blob[pos] ^ 0x01))
            changes.append(Change(f"88.118.8/FZ-{i}".encode(), bytes(blob)))
        store.write(changes)
        judge = Judge({False: store})
        answered = 0
        with store.read() as txn:
            for i in range(400):
                for qtype in ("TXT", "URI", "NAPTR"):
                    q = query(f"fz-{i}.8.118.88.{APEX}", qtype, use_edns=0, payload=4096)
                    answered += judge.check(q, "wide", txn=txn, tcp=True) is not None
        assert answered > 50
    finally:
        store.close()


# -- the pump ----------------------------------------------------------------------------------


class PumpServer:
    """A DNS server as the worker runs it: the pump on a real socket in a thread, the general
    path (respond) for what it hands back.  ``general`` lists the datagrams it handed back."""

    def __init__(self, twin, store, zone="default"):
        self.store, self.zone = store, zone
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.pump = twin.UdpPump(self.sock, None, fast_zone(twin, zone))
        self.general: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.error: BaseException | None = None

    def _serve(self):
        try:
            while not self.stop.is_set():
                if not select.select([self.sock], [], [], 0.05)[0]:
                    continue
                _, rest = self.pump.run(self.store.env, self.store.records_db,
                                        self.store.prefixes_db)  # fmt: skip
                for data, addr, reply in rest:
                    assert reply is None
                    self.general.append(data)
                    with self.store.read() as txn:
                        out = respond(data, general_zone(self.zone),
                                      store_lookup(self.store, txn), now=int(time.time()),
                                      max_udp=ZONES[self.zone][2])  # fmt: skip
                    if out:
                        self.sock.sendto(out, addr)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def __enter__(self):
        self.thread.start()
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        assert self.error is None, self.error


def test_pump_answers_dns_over_a_real_socket(stores):
    store = stores[False]
    for twin in twins():
        server = PumpServer(twin, store)
        with server as port:
            def ask(ident, qtype, **kw):
                q = dns.message.make_query(name_of(ident), qtype, **kw)
                r = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
                assert r.id == q.id
                return q, r

            q, r = ask("88.118.8/sn-1", "URI")
            assert r.flags & dns.flags.AA and r.rcode() == dns.rcode.NOERROR
            assert [(rd.priority, rd.target) for rd in r.answer[0]] == [
                (1, b"https://example.test/sn/1"), (2, b"https://mirror.test/sn/1!")]
            q, r = ask("99/one", "TXT", use_edns=0, payload=1232, want_dnssec=True)
            assert [b"".join(rd.strings) for rd in r.answer[0]] == [
                b"type=URL;index=1;data=https://x.test/99"]
            assert r.edns == 0 and r.ednsflags & dns.flags.DO and r.payload == 1232
            q, r = ask("88.118.8/long-2k", "TXT", use_edns=0)  # over 1232: TC, no answer
            assert r.flags & dns.flags.TC and not r.answer
            q, r = ask("88.118.8/nothere", "NAPTR")  # a miss: the general path's NXDOMAIN
            assert r.rcode() == dns.rcode.NXDOMAIN
            q, r = ask("77.1/not-held", "TXT")
            assert r.rcode() == dns.rcode.REFUSED
        assert len(server.general) == 2  # only the miss and the not-held name were handed back
        assert dns.message.from_wire(server.general[0]).question[0].rdtype == dns.rdatatype.NAPTR


def _burst_pair():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    return server, client


def _pump_all(pump, sock, store, want: int) -> tuple[list[int], list]:
    """``pump.run`` until ``want`` datagrams were read from ``sock``: (reads, rest)."""
    reads, rest = [], []
    for _ in range(100):
        if sum(reads) >= want:
            break
        select.select([sock], [], [], 1.0)
        n, r = pump.run(store.env, store.records_db, store.prefixes_db)
        reads.append(n)
        rest += r
    return reads, rest


def test_pump_hand_back_sends_nothing_and_returns_every_datagram(stores):
    store = stores[False]
    handle_req = Message(Envelope(request_id=7),
                         Header(HC.OpCode.RESOLUTION, opflags=HC.FLAG_PUBLIC_ONLY),
                         ResolutionRequest(b"99/one")).to_wire()  # fmt: skip
    dns_burst = [query(name_of(i), t, qid=k, **kw)
                 for k, (i, t, kw) in enumerate([
                     ("88.118.8/sn-1", "TXT", {}), ("99/one", "URI", {"use_edns": 0}),
                     ("88.118.8/nothere", "TXT", {}), ("88.118.8/many", "NAPTR", {}),
                     ("abc.def/item-7", "NAPTR", {"use_edns": 0, "payload": 4096})])]
    dns_burst += [b"junk", handle_req]
    for twin in twins():
        for dns_mode in (True, False):
            server, client = _burst_pair()
            with server, client:
                zone = fast_zone(twin, "wide") if dns_mode else None
                pump = twin.UdpPump(server, None, zone, True)
                for d in dns_burst:
                    client.sendto(d, server.getsockname())
                reads, rest = _pump_all(pump, server, store, len(dns_burst))
                assert sum(reads) == len(dns_burst)
                assert [d for d, _, _ in rest] == dns_burst
                assert all(a == client.getsockname() for _, a, _ in rest)
                assert not select.select([client], [], [], 0.2)[0], "hand_back sends nothing"
                with store.read() as txn:
                    for d, _, reply in rest:
                        if dns_mode:
                            want = twin.dns_answer(d, txn, store.records_db, store.prefixes_db,
                                                   zone, int(time.time()))  # fmt: skip
                        else:
                            want = twin.handle_resolve(d, txn, store.records_db,
                                                       store.prefixes_db)  # fmt: skip
                        assert reply == want
                replies = [r for _, _, r in rest]
                if dns_mode:
                    assert sum(r is not None for r in replies) == 4  # all but miss, junk, handle
                    assert dns.message.from_wire(replies[3]).flags & dns.flags.TC
                else:
                    assert replies[-1] is not None and all(r is None for r in replies[:-1])


def test_pump_dns_mode_sends_what_dns_answer_gives(stores):
    """Without hand_back: a burst of more than one batch; answered datagrams go out (TC forms
    included), the rest comes back with None."""
    store = stores[False]
    base = [query(name_of(i), t, **kw) for i in ("88.118.8/sn-1", "88.118.8/urls", "99/one",
                                                 "88.118.8/nothere", "88.118.8/long-2k")
            for t in ("TXT", "NAPTR") for kw in ({}, {"use_edns": 0})]  # fmt: skip
    burst = (base * 4)[: native.BATCH + 7]
    for twin in twins():
        server, client = _burst_pair()
        with server, client:
            zone = fast_zone(twin, "default")
            pump = twin.UdpPump(server, None, zone)
            assert pump.dns is zone and pump.hand_back is False
            for d in burst:
                client.sendto(d, server.getsockname())
            reads, rest = _pump_all(pump, server, store, len(burst))
            assert sum(reads) == len(burst) and reads[0] == native.BATCH
            with store.read() as txn:
                want = [twin.dns_answer(d, txn, store.records_db, store.prefixes_db, zone,
                                        int(time.time())) for d in burst]  # fmt: skip
            assert [d for d, _, r in rest] == [d for d, w in zip(burst, want) if w is None]
            assert all(r is None for _, _, r in rest)
            sent = [w for w in want if w is not None]
            got = []
            while len(got) < len(sent) and select.select([client], [], [], 2.0)[0]:
                got.append(client.recv(1 << 16))
            while select.select([client], [], [], 0.05)[0]:  # nothing more
                got.append(client.recv(1 << 16))
            assert got == sent
            assert pump.dropped == 0
