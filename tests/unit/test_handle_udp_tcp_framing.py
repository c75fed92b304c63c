"""Unit tests of the Handle transports' sans-IO parts: multi-packet UDP
(``resolver.protocols.handle.udp``: ``split`` and ``Reassembler``) and TCP framing
(``resolver.protocols.handle.tcp.FrameBuffer``), handle.md §3.1.

The reassembler's clock is injected, so expiry is tested without sleeping.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    Envelope, HandleProtocolError, Header, Message, Opaque, ResolutionRequest, envelope_flags,
)  # fmt: skip
from resolver.protocols.handle.tcp import FrameBuffer
from resolver.protocols.handle.udp import Reassembler, split


def message(payload_size: int, request_id: int = 0x01020304, session_id: int = 0) -> bytes:
    """A well-formed message whose payload (after the envelope) is ``payload_size`` bytes."""
    filler = payload_size - C.HEADER_SIZE - 4
    assert filler >= 0
    body = random.Random(payload_size).randbytes(filler)
    env = Envelope(2, 10, envelope_flags(suggest=(2, 10)), session_id, request_id)
    wire = Message(env, Header(C.OpCode.SESSION_SETUP, 0, 0x19000000), Opaque(body)).to_wire()
    assert len(wire) == C.ENVELOPE_SIZE + payload_size
    return wire


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# =============================================================================================
# split
# =============================================================================================


@pytest.mark.parametrize("size", [C.HEADER_SIZE + 4, 100, C.UDP_PAYLOAD])
def test_split_leaves_a_message_that_fits_alone(size):
    wire = message(size)
    assert len(wire) <= C.UDP_PACKET
    assert split(wire) == [wire]


@pytest.mark.parametrize("size", [C.UDP_PAYLOAD + 1, 2 * C.UDP_PAYLOAD, 2 * C.UDP_PAYLOAD + 1,
                                  5000, 65536, C.MAX_MESSAGE])  # fmt: skip
def test_split_packets(size):
    wire = message(size, request_id=0x7FFFFFF1, session_id=0x51)
    packets = split(wire)
    assert len(packets) == -(-size // C.UDP_PAYLOAD)
    original = Envelope.from_wire(wire)
    for seq, packet in enumerate(packets):
        assert len(packet) <= C.UDP_PACKET
        env = Envelope.from_wire(packet)
        assert env.truncated
        assert env.request_id == 0x7FFFFFF1 and env.session_id == 0x51
        assert env.sequence == seq
        assert env.length == size  # the whole message's length in every envelope
        assert (env.major, env.minor) == (2, 10)
        assert env.flags & ~C.ENV_TRUNCATED == original.flags  # suggested version kept
    assert all(len(p) == C.UDP_PACKET for p in packets[:-1])
    assert b"".join(p[C.ENVELOPE_SIZE :] for p in packets) == wire[C.ENVELOPE_SIZE :]


def test_split_then_reassemble_decodes_to_the_same_message():
    wire = message(3000)
    r = Reassembler()
    out = [r.feed("peer", p) for p in split(wire)]
    assert out[:-1] == [None] * (len(out) - 1)
    env, payload = out[-1]
    got, sent = Message.from_parts(env, payload), Message.from_wire(wire)
    assert (got.header, got.body, got.credential) == (sent.header, sent.body, sent.credential)
    assert got.envelope.request_id == sent.envelope.request_id


# =============================================================================================
# Reassembler
# =============================================================================================


def _complete(r: Reassembler, peer, packets):
    results = [r.feed(peer, p) for p in packets]
    done = [x for x in results if x is not None]
    assert results[-1] is not None and len(done) == 1
    return done[0]


def test_reassemble_in_order():
    wire = message(2000)
    r = Reassembler()
    env, payload = _complete(r, "a", split(wire))
    assert payload == wire[C.ENVELOPE_SIZE :]
    assert env.request_id == 0x01020304 and env.length == 2000 and env.truncated
    assert len(r) == 0 and r.held_bytes == 0


@pytest.mark.parametrize("seed", range(8))
def test_reassemble_shuffled(seed):
    wire = message(4000)
    packets = split(wire)
    random.Random(seed).shuffle(packets)
    r = Reassembler()
    env, payload = _complete(r, "a", packets)
    assert payload == wire[C.ENVELOPE_SIZE :]
    assert len(r) == 0 and r.held_bytes == 0


def test_reassemble_with_duplicates():
    wire = message(2000)
    packets = split(wire)
    assert len(packets) == 5
    r = Reassembler()
    assert r.feed("a", packets[0]) is None
    held = r.held_bytes
    assert r.feed("a", packets[0]) is None  # duplicate: ignored, not counted twice
    assert r.held_bytes == held
    order = [packets[i] for i in (2, 2, 1, 3, 1, 3)] + [packets[4]]
    _env, payload = _complete(r, "a", order)
    assert payload == wire[C.ENVELOPE_SIZE :]
    assert len(r) == 0 and r.held_bytes == 0
    assert r.feed("a", packets[4]) is None  # a late duplicate starts a new partial, no reply


def test_packets_disagreeing_on_the_length_drop_the_message():
    packets = split(message(2000))
    other = split(message(3000))  # same request id, another total length
    r = Reassembler()
    assert r.feed("a", packets[0]) is None
    with pytest.raises(HandleProtocolError):
        r.feed("a", other[1])
    assert len(r) == 0 and r.held_bytes == 0
    for p in packets[1:]:  # the rest can no longer complete the dropped message
        assert r.feed("a", p) is None


def _packet(request_id: int, sequence: int, length: int, chunk: bytes) -> bytes:
    env = Envelope(2, 11, envelope_flags(truncated=True), 0, request_id, sequence, length)
    return env.to_wire() + chunk


@pytest.mark.parametrize("sequence,length,chunk", [
    (1000, 1000, b"x" * 10),  # sequence ≥ length
    (0xFFFFFFFF, 1000, b"x" * 10),
    (0, 1000, b""),  # no data
    (0, 10, b"x" * 11),  # more data than the whole message
    (0, C.MAX_MESSAGE + 1, b"x" * 492),  # over 256 KiB
    (0, 0xFFFFFFFF, b"x" * 492),
    (0, 0, b"x"),
])  # fmt: skip
def test_impossible_packets_are_refused(sequence, length, chunk):
    r = Reassembler()
    with pytest.raises(HandleProtocolError):
        r.feed("a", _packet(7, sequence, length, chunk))
    assert len(r) == 0 and r.held_bytes == 0


@pytest.mark.parametrize("n", [0, 1, 19])
def test_packet_shorter_than_an_envelope_is_refused(n):
    with pytest.raises(HandleProtocolError):
        Reassembler().feed("a", _packet(7, 0, 100, b"x" * 80)[:n])


def test_more_packets_than_the_length_allows():
    r = Reassembler()
    assert r.feed("a", _packet(7, 0, 100, b"x" * 60)) is None
    with pytest.raises(HandleProtocolError):
        r.feed("a", _packet(7, 1, 100, b"x" * 60))  # 120 > 100
    assert len(r) == 0 and r.held_bytes == 0


def test_sequence_numbers_with_a_gap_are_refused():
    r = Reassembler()
    assert r.feed("a", _packet(7, 0, 100, b"x" * 50)) is None
    with pytest.raises(HandleProtocolError):
        r.feed("a", _packet(7, 2, 100, b"y" * 50))  # all bytes arrived, but as packets 0 and 2
    assert len(r) == 0 and r.held_bytes == 0


def test_message_of_exactly_256_kib_reassembles():
    wire = message(C.MAX_MESSAGE)
    r = Reassembler()
    _env, payload = _complete(r, "a", split(wire))
    assert payload == wire[C.ENVELOPE_SIZE :]


def test_max_messages_cap():
    r = Reassembler(max_messages=3)
    firsts = {rid: split(message(1000, request_id=rid)) for rid in (1, 2, 3, 4)}
    for rid in (1, 2, 3):
        assert r.feed("a", firsts[rid][0]) is None
    assert len(r) == 3
    with pytest.raises(HandleProtocolError):
        r.feed("a", firsts[4][0])
    assert len(r) == 3
    # the messages already started still complete, and make room for new ones
    env, payload = _complete(r, "a", firsts[1][1:])
    assert env.request_id == 1
    assert r.feed("a", firsts[4][0]) is None
    assert len(r) == 3


def test_max_bytes_cap():
    r = Reassembler(max_bytes=2000)
    a = split(message(3000, request_id=1))
    b = split(message(3000, request_id=2))
    assert r.feed("a", a[0]) is None and r.feed("a", a[1]) is None  # 984 B held
    assert r.feed("a", b[0]) is None and r.feed("a", b[1]) is None  # 1968 B held
    assert r.held_bytes == 4 * C.UDP_PAYLOAD <= 2000
    with pytest.raises(HandleProtocolError):
        r.feed("a", a[2])  # would exceed the cap: that message is dropped
    assert r.held_bytes == 2 * C.UDP_PAYLOAD
    assert len(r) == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 8), st.integers(1, 1500),
                          st.integers(1, 600), st.integers(0, 3)), max_size=60))  # fmt: skip
def test_held_bytes_never_exceed_the_caps(packets):
    r = Reassembler(max_messages=4, max_bytes=3000)
    for rid, seq, length, size, peer in packets:
        try:
            r.feed(peer, _packet(rid, seq, length, b"z" * size))
        except HandleProtocolError:
            pass
        assert 0 <= r.held_bytes <= 3000
        assert len(r) <= 4


def test_timeout_expiry_with_an_injected_clock():
    clock = Clock()
    r = Reassembler(timeout=5.0, clock=clock)
    packets = split(message(2000))
    assert r.feed("a", packets[0]) is None
    clock.now += 4.9
    assert r.expire() == 0 and len(r) == 1
    clock.now += 0.2  # 5.1 s after the first packet
    assert r.expire() == 1
    assert len(r) == 0 and r.held_bytes == 0
    for p in packets[1:]:  # without packet 0 the message never completes
        assert r.feed("a", p) is None
    assert len(r) == 1


def test_feed_expires_old_partials():
    clock = Clock()
    r = Reassembler(timeout=5.0, clock=clock)
    old = split(message(2000, request_id=1))
    assert r.feed("a", old[0]) is None
    clock.now += 6
    new = split(message(2000, request_id=2))
    assert r.feed("b", new[0]) is None
    assert len(r) == 1 and r.held_bytes == len(new[0]) - C.ENVELOPE_SIZE


def test_a_slow_but_timely_message_completes():
    clock = Clock()
    r = Reassembler(timeout=5.0, clock=clock)
    packets = split(message(2000))
    for p in packets[:-1]:
        assert r.feed("a", p) is None
        clock.now += 1.0
    assert r.feed("a", packets[-1]) is not None


def test_two_peers_with_the_same_request_id_are_kept_apart():
    wire_a = message(1500, request_id=42)
    wire_b = message(1600, request_id=42)
    pa, pb = split(wire_a), split(wire_b)
    r = Reassembler()
    done = {}
    for x, y in zip(pa, pb):
        for peer, packet in (("10.0.0.1", x), ("10.0.0.2", y)):
            out = r.feed(peer, packet)
            if out is not None:
                done[peer] = out[1]
    assert done == {"10.0.0.1": wire_a[20:], "10.0.0.2": wire_b[20:]}
    assert len(r) == 0


@pytest.mark.parametrize("peer", [("127.0.0.1", 5000), ("::1", 5000, 0, 0)])
def test_socket_addresses_are_peers(peer):
    wire = message(1000)
    _env, payload = _complete(Reassembler(), peer, split(wire))
    assert payload == wire[20:]


# =============================================================================================
# FrameBuffer
# =============================================================================================


def _frames():
    return [
        Message(Envelope(request_id=1), Header(1, 0, 0x19000000),
                ResolutionRequest(b"88.118.8/a")).to_wire(),
        message(5000, request_id=2),
        Envelope(request_id=3).to_wire(),  # an envelope announcing an empty message
        Message(Envelope(request_id=4), Header(2, 0, 0), Opaque()).to_wire(),
    ]


def test_frames_fed_byte_by_byte():
    frames = _frames()
    fb = FrameBuffer()
    got = []
    for byte in b"".join(frames):
        got += list(fb.feed(bytes((byte,))))
        assert len(fb) < C.ENVELOPE_SIZE + 5000
    assert [f for _e, f in got] == frames
    assert [e.request_id for e, _f in got] == [1, 2, 3, 4]
    assert len(fb) == 0


def test_several_frames_in_one_chunk():
    frames = _frames()
    fb = FrameBuffer()
    got = list(fb.feed(b"".join(frames) + frames[0][:30]))
    assert [f for _e, f in got] == frames
    assert len(fb) == 30
    assert [f for _e, f in fb.feed(frames[0][30:])] == [frames[0]]
    assert len(fb) == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 6000), max_size=12))
def test_frames_split_anywhere(cuts):
    data = b"".join(_frames())
    points = sorted({c % len(data) for c in cuts} | {0, len(data)})
    fb = FrameBuffer()
    got = []
    for a, b in zip(points, points[1:]):
        got += [f for _e, f in fb.feed(data[a:b])]
    assert got == _frames()


def test_over_long_frame_raises_at_its_envelope():
    fb = FrameBuffer()
    head = Envelope(request_id=9, length=C.MAX_MESSAGE + 1).to_wire()
    assert list(fb.feed(head[:19])) == []
    with pytest.raises(HandleProtocolError):
        list(fb.feed(head[19:]))  # no byte of the body was needed to refuse it


def test_over_long_frame_after_good_ones():
    good = _frames()[0]
    fb = FrameBuffer()
    it = fb.feed(good + Envelope(length=0xFFFFFFFF).to_wire())
    assert next(it)[1] == good
    with pytest.raises(HandleProtocolError):
        next(it)


def test_frame_of_exactly_256_kib_is_accepted():
    wire = message(C.MAX_MESSAGE)
    fb = FrameBuffer()
    out = []
    for i in range(0, len(wire), 65536):
        out += list(fb.feed(wire[i : i + 65536]))
    assert [f for _e, f in out] == [wire]


def test_buffer_never_exceeds_one_envelope_and_one_maximal_message():
    big = message(C.MAX_MESSAGE)
    stream = big + big + _frames()[0] + big
    fb = FrameBuffer()
    count = 0
    for i in range(0, len(stream), 4096):
        count += len(list(fb.feed(stream[i : i + 4096])))
        assert len(fb) <= C.ENVELOPE_SIZE + C.MAX_MESSAGE
    assert count == 4 and len(fb) == 0
