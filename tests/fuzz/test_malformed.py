"""The malformed-input suite of the Handle protocol (table in ``malformed.py``).

Every case is checked three ways: at the codec (``Message.from_wire`` decodes it or raises
``HandleProtocolError``, never anything else), and against a real two-worker node over UDP and
over TCP, where it must get exactly its expected outcome — a response code, or no reply at all.
The UDP cases are sent as one batch (each with its own request id, from several source ports
so both workers get some) and the silence of the "no reply" cases is judged once, after every
expected reply has arrived.  Afterwards the node must still answer, with the same worker
processes: nothing a client sends may kill a worker.
"""

from __future__ import annotations

import pytest

from malformed import (
    CASES, ERROR, NO_REPLY, OK, children, handle_port, malformed_cases, request, tcp_exchange,
    udp_ask, udp_batch,
)  # fmt: skip
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import HandleProtocolError, Message, envelope_flags

pytestmark = pytest.mark.wire

FIRST_RID = 0x00C0FFEE
RID = {case.name: FIRST_RID + i for i, case in enumerate(CASES)}
SINGLE = [c for c in CASES if not c.multi]
OVER_TCP = [c for c in CASES if c.tcp is not None]


def _ids(case) -> str:
    return case.name


def test_the_table():
    bad = malformed_cases()
    assert len(bad) >= 200
    assert len(RID) == len(CASES), "case names must be unique"
    for case in CASES:
        assert case.decode in (OK, ERROR, None), case.name
        assert case.udp is NO_REPLY or isinstance(case.udp, int), case.name
        assert (case.decode is None) == case.multi, case.name
        assert case.echo or case.udp is NO_REPLY, case.name  # UDP replies are matched by id
    # Both kinds of outcome are well represented, over both transports.
    assert sum(c.udp is NO_REPLY for c in bad) >= 80
    assert sum(c.udp == 4 for c in bad) >= 60
    assert {1, 4, 5, 100, 102, 200, 301} <= {c.udp for c in CASES}
    assert len(OVER_TCP) >= 200


# =============================================================================================
# Decoder
# =============================================================================================


@pytest.mark.parametrize("case", SINGLE, ids=_ids)
def test_decode(case):
    data = case.make(RID[case.name])
    if case.decode == OK:
        m = Message.from_wire(data)
        assert m.to_wire() == data
    else:
        with pytest.raises(HandleProtocolError):
            Message.from_wire(data)


# =============================================================================================
# A real node
# =============================================================================================


@pytest.fixture(scope="module")
def handle_node(start_node):
    node = start_node(workers=2, args=("--handle-port", "0"))
    port = handle_port(node.banner)
    workers = children(node.pid)
    assert len(workers) == 2, workers
    # Ready: both transports answer a valid request (bounded: udp_ask times out).
    assert udp_ask(port, request(1)).header.rc == 1
    replies, _rest, _closed = tcp_exchange(port, request(2))
    assert [m.header.rc for m in replies] == [1]
    return node, port, workers


@pytest.fixture(scope="module")
def udp_results(handle_node):
    _node, port, _workers = handle_node
    items = [(RID[c.name], c.make(RID[c.name])) for c in CASES]
    expected = {RID[c.name] for c in CASES if c.udp is not NO_REPLY}
    return udp_batch(port, items, expected_replies=expected)


@pytest.fixture(scope="module")
def tcp_results(handle_node):
    _node, port, _workers = handle_node
    return {c.name: tcp_exchange(port, c.make(RID[c.name])) for c in OVER_TCP}


def _check_reply(case, m: Message) -> None:
    assert m.is_response
    assert m.credential == b""
    assert m.envelope.flags == envelope_flags()  # ours (2.11) suggested, no TC on a whole reply
    if case.version is not None:
        assert (m.envelope.major, m.envelope.minor) == case.version


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_udp(case, udp_results):
    got = udp_results.get(RID[case.name], [])
    if case.udp is NO_REPLY:
        assert got == [], f"{case.name}: expected no reply, got RC {[m.header.rc for m in got]}"
        return
    assert [m.header.rc for m in got] == [case.udp], [m.body for m in got]
    _check_reply(case, got[0])


@pytest.mark.parametrize("case", OVER_TCP, ids=_ids)
def test_tcp(case, tcp_results):
    replies, rest, closed = tcp_results[case.name]
    assert closed, f"{case.name}: the server kept the half-closed connection open"
    assert [m.header.rc for m in replies] == list(case.tcp), [m.body for m in replies]
    assert rest == b""
    for m in replies:
        _check_reply(case, m)
    if case.echo:  # every reply, RC 4 to an over-long frame included, echoes the request id
        assert [m.envelope.request_id for m in replies] == [RID[case.name]] * len(replies)


def test_digest_in_rc_4_for_a_wrong_major(udp_results):
    # RC 4 "with our version" also carries the request digest at our version: SHA-256.
    m = udp_results[RID["major-version-3-with-rd"]][0]
    assert m.digest is not None and m.digest[0] == C.HASH_SHA256


def test_old_md5_digest_for_a_2_0_client(udp_results):
    m = udp_results[RID["control-rd-2.0"]][0]
    assert m.digest is not None and m.digest[0] == C.HASH_MD5_OLD


def _maximal(rid: int, extra: int = 0) -> bytes:
    """A valid resolution of 88.118.8/demo-1 whose message (after the envelope) is exactly
    256 KiB (+ ``extra`` bytes): 37000 "URL" types and one long type fill it."""
    base = request(rid, types=(b"URL",) * 37000 + (b"",))
    pad = C.MAX_MESSAGE - (len(base) - C.ENVELOPE_SIZE) + extra
    data = request(rid, types=(b"URL",) * 37000 + (b"X" * pad,))
    assert len(data) == C.ENVELOPE_SIZE + C.MAX_MESSAGE + extra
    return data


def test_tcp_frame_of_exactly_256_kib_is_answered(handle_node):
    _node, port, _workers = handle_node
    replies, rest, closed = tcp_exchange(port, _maximal(0x256) + request(0x257))
    assert [(m.header.rc, m.envelope.request_id) for m in replies] == [(1, 0x256), (1, 0x257)]
    assert rest == b"" and closed


def test_tcp_frame_over_256_kib_is_refused_with_rc_4(handle_node):
    _node, port, _workers = handle_node
    replies, rest, closed = tcp_exchange(port, request(0x258) + _maximal(0x259, extra=1)
                                         + request(0x25A))  # fmt: skip
    # The request before it is answered; the over-long one gets RC 4; nothing after is read.
    assert [(m.header.rc, m.envelope.request_id) for m in replies] == [(1, 0x258), (4, 0x259)]
    assert rest == b"" and closed


def test_node_survived_the_suite(handle_node, udp_results, tcp_results):
    node, port, workers = handle_node
    assert node.proc.poll() is None
    assert children(node.pid) == workers, "a worker died (and was replaced) during the suite"
    assert udp_ask(port, request(3, b"88.118.8/demo-2")).header.rc == 1
    replies, _rest, closed = tcp_exchange(port, request(4) + request(5, b"88.118.8/none"))
    assert [m.header.rc for m in replies] == [1, 100] and closed
    log = node.stderr()
    assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]
