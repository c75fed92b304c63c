"""Parity of the fast paths' resolution counters (``tally``, issue 7 §6) in both twins.

Every reply ``http_resolve``, ``handle_resolve`` and ``dns_answer`` return adds one to
``tally[(prefix, outcome)]``; a call that returns None adds nothing.  For every HTTP and Handle
parity vector (hits, misses, values-not-found, prefix handles, case folding, declines, replies
too long to send) each twin must count exactly what the case expects — the prefix taken from the
general path's ``Identifier.parse(...).key`` — and answer the same bytes as without a tally.
DNS queries over the parity store, then ``UdpPump`` on real 127.0.0.1 sockets in Handle and DNS
mode: each answered datagram counted once, wherever its reply goes (sent, handed back too long,
``hand_back``), none for a datagram declined or whose answer raised.
"""

from __future__ import annotations

import collections
import select
import socket
import time

import dns.flags
import dns.message
import dns.name
import pytest
import vectors
from test_handle_parity import CASES as HANDLE_CASES
from test_handle_parity import request, twins

import native
from native import _hotpath_py as python_twin
from native import constants as NC
from resolver.errors import Outcome
from resolver.identifier import Identifier
from resolver.protocols.dns import mapping
from resolver.protocols.handle import constants as HC

HTTP_CASES = vectors.cases()
OUTCOME = {"hit": Outcome.OK.value, "miss": Outcome.NOT_FOUND.value,
           "empty": Outcome.VALUES_NOT_FOUND.value}  # fmt: skip
APEX = "id.idnode.test."
ROUNDS = 100  # bounded: run() calls before giving up on a burst


def prefix_of(handle: bytes, case_sensitive: bool = False) -> bytes:
    """The storage key's prefix, as the general path normalizes the identifier."""
    return Identifier.parse(handle, case_sensitive=case_sensitive).key.partition(b"/")[0]


def handle_of(data: bytes) -> bytes:
    """The identifier of a well-formed resolution request (the body's first field)."""
    hl = int.from_bytes(data[44:48], "big")
    return data[48 : 48 + hl]


def expected(kind: str, handle: bytes, case_sensitive: bool) -> dict:
    if kind not in OUTCOME:
        return {}
    return {(prefix_of(handle, case_sensitive), OUTCOME[kind]): 1}


def assert_keys_typed(tally: dict) -> None:
    assert all(type(p) is bytes and type(o) is str and type(n) is int
               for (p, o), n in tally.items())  # fmt: skip


def test_constants_are_outcome_values(cython_twin_or_none):
    assert Outcome(NC.TALLY_OK) is Outcome.OK
    assert Outcome(NC.TALLY_NOT_FOUND) is Outcome.NOT_FOUND
    assert Outcome(NC.TALLY_VALUES_NOT_FOUND) is Outcome.VALUES_NOT_FOUND
    if cython_twin_or_none is not None:
        compiled = cython_twin_or_none._CONSTANTS
        for name in ("TALLY_OK", "TALLY_NOT_FOUND", "TALLY_VALUES_NOT_FOUND"):
            assert compiled[name] == getattr(NC, name)


# -- HTTP -------------------------------------------------------------------------------------


def http(twin, store, case, tally, public_only=True):
    types = tuple(t.encode() for t in case.types)
    with store.read() as txn:
        return twin.http_resolve(case.handle, types, tuple(case.indexes), public_only, txn,
                                 store.records_db, store.prefixes_db, case.case_sensitive,
                                 tally=tally)  # fmt: skip


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.id for c in HTTP_CASES])
def test_http_counts_each_body_returned(parity_stores, cython_twin_or_none, case):
    store = parity_stores[case.case_sensitive]
    counts = []
    for twin in twins(cython_twin_or_none):
        tally: dict = {}
        out = http(twin, store, case, tally)
        assert out == http(twin, store, case, None), "the answer does not depend on the tally"
        assert (out is None) == (case.expect == "declined")
        assert tally == expected(case.expect, case.handle, case.case_sensitive)
        assert_keys_typed(tally)
        counts.append(tally)
    assert all(c == counts[0] for c in counts)


def test_http_not_public_only_counts_nothing(parity_stores, cython_twin_or_none):
    case = HTTP_CASES[0]
    assert case.expect == "hit"
    for twin in twins(cython_twin_or_none):
        tally: dict = {}
        assert http(twin, parity_stores[False], case, tally, public_only=False) is None
        assert tally == {}


# -- Handle -----------------------------------------------------------------------------------


def resolve(twin, store, data, case_sensitive=False, tally=None, txn=None):
    if txn is not None:
        return twin.handle_resolve(data, txn, store.records_db, store.prefixes_db,
                                   case_sensitive, None, tally)  # fmt: skip
    with store.read() as own:
        return resolve(twin, store, data, case_sensitive, tally, own)


@pytest.mark.parametrize("case", HANDLE_CASES, ids=[c.id for c in HANDLE_CASES])
def test_handle_counts_each_reply_returned(parity_stores, cython_twin_or_none, case):
    store = parity_stores[case.case_sensitive]
    counts = []
    for twin in twins(cython_twin_or_none):
        tally: dict = {}
        out = resolve(twin, store, case.data, case.case_sensitive, tally)
        assert out == resolve(twin, store, case.data, case.case_sensitive)
        assert (out is not None) == (case.expect in OUTCOME)
        handle = handle_of(case.data) if case.expect in OUTCOME else b""
        assert tally == expected(case.expect, handle, case.case_sensitive)
        assert_keys_typed(tally)
        counts.append(tally)
    assert all(c == counts[0] for c in counts)


def test_the_vectors_cover_every_counted_shape():
    """Not vacuous: the cases above include each outcome, a prefix handle, a lower-case query
    counted under an upper-cased prefix, declines and a hit too long to send."""
    kinds = collections.Counter(c.expect for c in HANDLE_CASES)
    assert kinds["hit"] and kinds["miss"] and kinds["empty"] and kinds["declined"]
    hits = [c for c in HANDLE_CASES if c.expect == "hit"]
    assert any(prefix_of(handle_of(c.data)) == b"0.NA" for c in hits)
    assert any(b"test.prefix/" in handle_of(c.data) for c in hits)
    assert any(c.id.startswith("vec-big") and c.expect == "declined" for c in HANDLE_CASES)
    assert any(c.expect == "empty" and c.types for c in HTTP_CASES)


def test_counts_for_chosen_requests(parity_stores, cython_twin_or_none):
    """The contract spelled out: keys, outcomes, case folding and declines."""
    asks = [
        (request(b"88.118.8/SN-2026-0001"), (b"88.118.8", "ok")),
        (request(b"88.118.8/nothere"), (b"88.118.8", "not_found")),
        (request(b"88.118.8/typed", (), (b"NO-SUCH-TYPE",)), (b"88.118.8", "values_not_found")),
        (request(b"0.NA/88.118.8"), (b"0.NA", "ok")),
        (request(b"0.na/88.118.8"), (b"0.NA", "ok")),
        (request(b"test.prefix/item-1"), (b"TEST.PREFIX", "ok")),
        (request(b"Test.Prefix/nothere"), (b"TEST.PREFIX", "not_found")),
        (request("中国.8/条目".encode()), ("中国.8".encode(), "ok")),
        (request(b"77.1/not-held"), None),  # prefix not held here
        (request(b"0.NA/99.1"), None),  # prefix handle not held
        (request(b"88.118.8/"), None),  # malformed identifier
        (request(b"88.118.8/big"), None),  # over MAX_MESSAGE: the general path's error
        (request(b"88.118.8/SN-2026-0001")[:-1], None),  # malformed message
    ]
    # case_sensitive: the prefix is folded all the same, the suffix is not
    cs_asks = [
        (request(b"test.prefix/Item-1"), (b"TEST.PREFIX", "ok")),
        (request(b"test.prefix/item-1"), (b"TEST.PREFIX", "not_found")),
        (request(b"0.na/test.prefix"), (b"0.NA", "ok")),
    ]
    for twin in twins(cython_twin_or_none):
        for cs, data, key in [(False, *a) for a in asks] + [(True, *a) for a in cs_asks]:
            tally: dict = {}
            out = resolve(twin, parity_stores[cs], data, cs, tally=tally)
            assert tally == ({key: 1} if key else {}), (twin, data)
            assert (out is None) == (key is None)


def test_counts_accumulate_into_one_dict(parity_stores, cython_twin_or_none):
    store = parity_stores[False]
    for twin in twins(cython_twin_or_none):
        tally = {(b"88.118.8", "ok"): 5, "someone else's": "untouched"}
        with store.read() as txn:
            for _ in range(3):
                resolve(twin, store, request(b"88.118.8/sn-2026-0001"), tally=tally, txn=txn)
                resolve(twin, store, request(b"88.118.8/gone"), tally=tally, txn=txn)
                resolve(twin, store, request(b"88.118.9/only"), tally=tally, txn=txn)
                resolve(twin, store, request(b"77.1/x"), tally=tally, txn=txn)
            twin.http_resolve(b"88.118.8/SN-2026-0001", None, None, True, txn, store.records_db,
                              store.prefixes_db, False, tally)  # fmt: skip
        assert tally == {(b"88.118.8", "ok"): 9, (b"88.118.8", "not_found"): 3,
                         (b"88.118.9", "ok"): 3, "someone else's": "untouched"}  # fmt: skip


NOT_DICTS = [[], (), "tally", 0, collections.Counter(), collections.defaultdict(int),
             collections.OrderedDict()]  # fmt: skip


@pytest.mark.parametrize("bad", NOT_DICTS, ids=[type(b).__name__ for b in NOT_DICTS])
def test_a_tally_that_is_not_a_dict_raises(parity_stores, cython_twin_or_none, bad):
    store = parity_stores[False]
    zone_wire = dns.name.from_text(APEX).to_wire()
    for twin in twins(cython_twin_or_none):
        with store.read() as txn:
            for data in (request(), b"junk"):  # answered or declined: refused at the call
                with pytest.raises(TypeError):
                    twin.handle_resolve(data, txn, store.records_db, store.prefixes_db, False,
                                        None, bad)  # fmt: skip
            for public_only in (True, False):
                with pytest.raises(TypeError):
                    twin.http_resolve(b"88.118.8/SN-2026-0001", None, None, public_only, txn,
                                      store.records_db, store.prefixes_db, tally=bad)
            with pytest.raises(TypeError):
                twin.dns_answer(b"junk", txn, store.records_db, store.prefixes_db,
                                twin.DnsZone(zone_wire), 0, tally=bad)  # fmt: skip
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with pytest.raises(TypeError):
                twin.UdpPump(sock, None, None, False, bad)
            pump = twin.UdpPump(sock)
            assert pump.tally is None
            with pytest.raises(TypeError):
                pump.tally = bad
            assert pump.tally is None
            mine: dict = {}
            pump.tally = mine
            assert pump.tally is mine
            pump.tally = None
            assert pump.tally is None


# -- DNS --------------------------------------------------------------------------------------


def dns_query(identifier: str, qtype="TXT", **kw) -> bytes:
    return dns.message.make_query(mapping.to_dns_name(identifier, APEX), qtype, **kw).to_wire()


DNS_ASKS = [  # (query, the key counted or None)
    (dns_query("88.118.8/SN-2026-0001"), (b"88.118.8", "ok")),
    (dns_query("88.118.8/sn-2026-0001", "URI", use_edns=0), (b"88.118.8", "ok")),
    (dns_query("88.118.8/typed", "NAPTR"), (b"88.118.8", "ok")),
    (dns_query("test.prefix/item-1", "URI"), (b"TEST.PREFIX", "ok")),
    (dns_query("88.118.9/only", "TXT", use_edns=0, payload=4096), (b"88.118.9", "ok")),
    (dns_query("88.118.8/big"), (b"88.118.8", "ok")),  # the TC form: the record was found
    (dns_query("88.118.8/nothere"), None),  # NXDOMAIN: the general path's
    (dns_query("88.118.8/private"), None),  # NODATA: no public value
    (dns_query("88.118.8/SN-2026-0001", "A"), None),  # a type the fast path does not answer
    (dns_query("77.1/x"), None),  # prefix not held: REFUSED
    (b"junk", None),
]


def test_dns_counts_each_response_returned(parity_stores, cython_twin_or_none):
    store = parity_stores[False]
    wire = dns.name.from_text(APEX).to_wire()
    now = int(time.time())
    answers = []
    for twin in twins(cython_twin_or_none):
        zone = twin.DnsZone(wire)
        got = []
        total: dict = {}
        with store.read() as txn:
            held = [None]
            for query, key in DNS_ASKS:
                tally: dict = {}
                out = twin.dns_answer(query, txn, store.records_db, store.prefixes_db, zone, now,
                                      False, held, None, tally)  # fmt: skip
                assert out == twin.dns_answer(query, txn, store.records_db, store.prefixes_db,
                                              zone, now)  # fmt: skip
                assert (out is None) == (key is None), query
                assert tally == ({key: 1} if key else {}), query
                twin.dns_answer(query, txn, store.records_db, store.prefixes_db, zone, now,
                                tally=total)  # fmt: skip
                got.append(out)
        assert dns.message.from_wire(got[5]).flags & dns.flags.TC  # the vectors hold a TC form
        assert total == dict(collections.Counter(key for _, key in DNS_ASKS if key))
        answers.append(got)
    assert all(a == answers[0] for a in answers)


# -- the pump ---------------------------------------------------------------------------------


def _pair():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return server, client


def pump_all(pump, server, client, store, datagrams, records_db=None, swap=False):
    """Send ``datagrams`` at once and ``run`` until all are read → (reads, rest, tallies):
    with ``swap`` a fresh dict is set as ``pump.tally`` before each run (as a drain does)."""
    for d in datagrams:
        client.sendto(d, server.getsockname())
    reads, rest, tallies = [], [], []
    records_db = store.records_db if records_db is None else records_db
    for _ in range(ROUNDS):
        if sum(reads) >= len(datagrams):
            break
        if swap:
            pump.tally = {}
            tallies.append(pump.tally)
        select.select([server], [], [], 1.0)
        n, r = pump.run(store.env, records_db, store.prefixes_db)
        reads.append(n)
        rest += r
    assert sum(reads) == len(datagrams)
    return reads, rest, tallies


def sum_tallies(tallies) -> dict:
    total: collections.Counter = collections.Counter()
    for t in tallies:
        total.update(t)
    return dict(total)


HANDLE_BURST = [
    request(b"88.118.8/SN-2026-0001"),
    request(b"0.NA/88.118.8"),  # after a held prefix: another key prefix
    request(b"88.118.9/only"),
    request(b"88.118.8/sn-2026-0001"),
    request(b"test.prefix/item-1"),
    request(b"88.118.8/nothere"),
    request(b"88.118.8/typed", (), (b"NO-SUCH-TYPE",)),
    request(b"88.118.8/big", (), (b"EMAIL",)),  # a reply longer than one packet: handed back
    request(b"77.1/not-held"),
    request(b"0.NA/99.1"),
    b"junk",
]


def handle_expected(store, datagrams) -> dict:
    """Independently: one count per datagram the pure twin answers, keyed by the general path's
    normalization and the reply's RC."""
    rc_outcome = {1: "ok", 100: "not_found", 200: "values_not_found"}
    want: collections.Counter = collections.Counter()
    for d in datagrams:
        out = resolve(python_twin, store, d)
        if out is not None:
            want[(prefix_of(handle_of(d)), rc_outcome[int.from_bytes(out[24:28], "big")])] += 1
    return dict(want)


@pytest.mark.parametrize("hand_back", [False, True], ids=["send", "hand-back"])
def test_pump_handle_mode_counts_each_answered_datagram_once(parity_stores,
                                                             cython_twin_or_none, hand_back):
    store = parity_stores[False]
    burst = (HANDLE_BURST * 7)[: native.BATCH + 13]  # more than one batch
    want = handle_expected(store, burst)
    assert want[(b"0.NA", "ok")] and want[(b"TEST.PREFIX", "ok")]
    assert want[(b"88.118.8", "not_found")] and want[(b"88.118.8", "values_not_found")]
    results = []
    for twin in twins(cython_twin_or_none):
        server, client = _pair()
        with server, client:
            tally: dict = {}
            pump = twin.UdpPump(server, None, None, hand_back, tally)
            assert pump.tally is tally
            reads, rest, _ = pump_all(pump, server, client, store, burst)
            assert reads[0] == native.BATCH
            assert tally == want
            assert_keys_typed(tally)
            long = [r for _, _, r in rest if r is not None and len(r) > HC.UDP_PACKET]
            assert len(long) == burst.count(HANDLE_BURST[7]), "too long: handed back, counted"
            answered = sum(r is not None for _, _, r in rest)
            assert answered == (sum(want.values()) if hand_back else len(long))
            results.append(tally)
    assert all(r == results[0] for r in results)


def test_pump_counts_many_keys_in_one_burst(parity_stores, cython_twin_or_none):
    """More distinct (prefix, outcome) keys in one burst than a twin might hold apart, mixed."""
    store = parity_stores[False]
    nope = (b"NO-SUCH-TYPE",)
    keys = [request(b"88.118.8/SN-2026-0001"), request(b"88.118.8/x"),
            request(b"88.118.8/typed", (), nope), request(b"88.118.9/only"),
            request(b"88.118.9/x"), request(b"88.118.9/only", (), nope), request(b"88.118.10/x"),
            request(b"88.118.11/x"), request(b"test.prefix/item-1"), request(b"TEST.prefix/x"),
            request(b"test.prefix/item-1", (), nope), request("中国.8/条目".encode()),
            request("中国.8/x".encode()), request(b"0.NA/88.118.8"),
            request(b"0.NA/88.118.8", (), nope), request(b"88.118.81/x")]  # fmt: skip
    burst = [keys[(i * 7) % len(keys)] for i in range(native.BATCH)]
    want = handle_expected(store, burst)
    assert len(want) == 15  # every request but the prefix not held gives its own key
    for twin in twins(cython_twin_or_none):
        server, client = _pair()
        with server, client:
            tally: dict = {}
            pump = twin.UdpPump(server, None, None, False, tally)
            pump_all(pump, server, client, store, burst)
            assert tally == want


def test_pump_tally_can_be_swapped_between_runs(parity_stores, cython_twin_or_none):
    store = parity_stores[False]
    burst = (HANDLE_BURST * 7)[: native.BATCH + 13]
    want = handle_expected(store, burst)
    for twin in twins(cython_twin_or_none):
        server, client = _pair()
        with server, client:
            pump = twin.UdpPump(server)
            reads, _, tallies = pump_all(pump, server, client, store, burst, swap=True)
            assert len([n for n in reads if n]) >= 2, "the burst took more than one run"
            assert sum_tallies(tallies) == want
            assert sum(tallies[0].values()) < sum(want.values())


def test_pump_does_not_count_a_datagram_whose_answer_raised(parity_stores, cython_twin_or_none):
    """A records database handle py-lmdb refuses: every record lookup raises (the pump hands
    those datagrams back with None), while prefix handles, read from ``prefixes``, answer."""
    store = parity_stores[False]
    burst = [request(b"88.118.8/SN-2026-0001"), request(b"0.NA/88.118.8"),
             request(b"88.118.8/nothere"), request(b"0.NA/88.118.9")]  # fmt: skip
    for twin in twins(cython_twin_or_none):
        server, client = _pair()
        with server, client:
            tally: dict = {}
            pump = twin.UdpPump(server, None, None, False, tally)
            _, rest, _ = pump_all(pump, server, client, store, burst, records_db=object())
            assert [(d, r) for d, _, r in rest] == [(burst[0], None), (burst[2], None)]
            assert tally == {(b"0.NA", "ok"): 2}


@pytest.mark.parametrize("hand_back", [False, True], ids=["send", "hand-back"])
def test_pump_dns_mode_counts_each_answered_datagram_once(parity_stores, cython_twin_or_none,
                                                          hand_back):  # fmt: skip
    store = parity_stores[False]
    wire = dns.name.from_text(APEX).to_wire()
    burst = ([q for q, _ in DNS_ASKS] * 8)[: native.BATCH + 9]
    by_query = dict(DNS_ASKS)
    want = dict(collections.Counter(by_query[q] for q in burst if by_query[q]))
    results = []
    for twin in twins(cython_twin_or_none):
        server, client = _pair()
        with server, client:
            tally: dict = {}
            pump = twin.UdpPump(server, None, twin.DnsZone(wire), hand_back, tally)
            reads, rest, _ = pump_all(pump, server, client, store, burst)
            assert reads[0] == native.BATCH
            assert tally == want
            answered = sum(r is not None for _, _, r in rest)
            assert answered == (sum(want.values()) if hand_back else 0)
            if not hand_back:  # what was counted was sent
                sent = []
                while select.select([client], [], [], 1.0 if not sent else 0.2)[0]:
                    sent.append(client.recv(1 << 16))
                assert len(sent) == sum(want.values())
            results.append(tally)
    assert all(r == results[0] for r in results)
