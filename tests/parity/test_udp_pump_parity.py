"""Parity of the UDP pump: both twins of ``UdpPump`` on real sockets over a real store.

A client sends a burst of datagrams — every request of the Handle parity cases, more than one
pump batch of them — to a non-blocking socket on 127.0.0.1; ``run`` is called until every
datagram is read.  Each twin must send, in arrival order, exactly the replies ``handle_resolve``
gives that fit one packet, and return every other datagram to its caller — with the oversized
reply, or None for the general path — byte for byte the same as the other twin.
"""

from __future__ import annotations

import select
import socket
import time

import pytest
from test_handle_parity import CASES, request, twins

import native
from native import _hotpath_py as python_twin
from resolver.protocols.handle import constants as HC

ROUNDS = 200  # bounded: run() calls before giving up on a burst
MAX_UDP_PAYLOAD = 65507  # IPv4


def _pair(family=socket.AF_INET, host="127.0.0.1"):
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setblocking(False)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    client = socket.socket(family, socket.SOCK_DGRAM)
    client.bind((host, 0))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return server, client


def _drain(sock: socket.socket, want: int, timeout: float = 2.0) -> list[bytes]:
    """Every datagram waiting for ``sock`` (``want`` expected; waits at most ``timeout``)."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
        got.append(sock.recv(1 << 17))
    sock.setblocking(False)
    try:
        while True:  # anything beyond what was expected is a failure the caller sees
            got.append(sock.recv(1 << 17))
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return got


def pump_burst(twin, store, datagrams: list[bytes], case_sensitive=False, family=socket.AF_INET,
               host="127.0.0.1", cache=None):  # fmt: skip
    """Send ``datagrams`` at once, pump them with ``twin.UdpPump`` → (replies, rest, reads)."""
    server, client = _pair(family, host)
    with server, client:
        for d in datagrams:
            client.sendto(d, server.getsockname())
        pump = twin.UdpPump(server, cache)
        reads: list[int] = []
        rest: list[tuple] = []
        for _ in range(ROUNDS):
            if sum(reads) == len(datagrams):
                break
            select.select([server], [], [], 1.0)
            n, r = pump.run(store.env, store.records_db, store.prefixes_db, case_sensitive)
            reads.append(n)
            rest.extend(r)
        want, _ = _expected(store, datagrams, case_sensitive, client.getsockname())
        replies = _drain(client, len(want))
        assert pump.dropped == 0
        return replies, rest, reads, client.getsockname()


def _expected(store, datagrams, case_sensitive, addr):
    replies, rest = [], []
    with store.read() as txn:
        for d in datagrams:
            out = python_twin.handle_resolve(d, txn, store.records_db, store.prefixes_db,
                                             case_sensitive)  # fmt: skip
            if out is not None and len(out) <= HC.UDP_PACKET:
                replies.append(out)
            else:
                rest.append((d, addr, out))
    return replies, rest


def _burst(case_sensitive: bool) -> list[bytes]:
    data = [c.data for c in CASES
            if c.case_sensitive == case_sensitive and 0 < len(c.data) <= MAX_UDP_PAYLOAD]
    data.append(request(b"88.118.8/big", (), (b"EMAIL",)))  # a reply longer than one packet
    while len(data) <= native.BATCH + 10:
        data += data
    return data


@pytest.mark.parametrize("case_sensitive", [False, True])
def test_pump_answers_what_handle_resolve_answers(parity_stores, cython_twin_or_none,
                                                  case_sensitive):  # fmt: skip
    store = parity_stores[case_sensitive]
    datagrams = _burst(case_sensitive)
    results = []
    for twin in twins(cython_twin_or_none):
        replies, rest, reads, addr = pump_burst(twin, store, datagrams, case_sensitive)
        want_replies, want_rest = _expected(store, datagrams, case_sensitive, addr)
        assert sum(reads) == len(datagrams)
        assert all(n <= native.BATCH for n in reads)
        assert reads[0] == native.BATCH, "a full socket gives a full batch"
        # not vacuous: the burst has answers, general-path datagrams and an oversized reply
        assert want_replies and any(r is None for *_, r in want_rest)
        assert any(r is not None and len(r) > HC.UDP_PACKET for *_, r in want_rest)
        assert replies == want_replies
        assert rest == want_rest
        results.append(([bytes(r) for r in replies], [(d, r) for d, _, r in rest]))
    assert all(r == results[0] for r in results)


def test_pump_on_an_idle_socket_reads_nothing(parity_stores, cython_twin_or_none):
    store = parity_stores[False]
    for twin in twins(cython_twin_or_none):
        server, _client = _pair()
        with server, _client:
            assert twin.UdpPump(server).run(store.env, store.records_db,
                                            store.prefixes_db) == (0, [])


def test_pump_on_a_closed_socket_raises(parity_stores, cython_twin_or_none):
    store = parity_stores[False]
    for twin in twins(cython_twin_or_none):
        server, client = _pair()
        client.close()
        pump = twin.UdpPump(server)
        server.close()
        with pytest.raises(OSError):
            pump.run(store.env, store.records_db, store.prefixes_db)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_pump_gives_ipv6_addresses_as_the_socket_module_does(parity_stores, cython_twin_or_none):
    if not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    store = parity_stores[False]
    datagrams = [request(b"0.NA/99.1"), request(b"88.118.8/SN-2026-0001")]
    for twin in twins(cython_twin_or_none):
        replies, rest, _, addr = pump_burst(twin, store, datagrams, family=socket.AF_INET6,
                                            host="::1")  # fmt: skip
        assert len(replies) == 1
        assert [(d, a) for d, a, _ in rest] == [(datagrams[0], addr)]
        assert len(addr) == 4
