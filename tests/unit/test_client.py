"""The Handle client (resolver/upstream/client.py) against scripted servers on 127.0.0.1.

Each test runs a tiny UDP and/or TCP server in the client's own event loop whose behaviour is
a function of what it receives: drop, answer late, send strays first, split the reply, answer
with a wrong digest.  The assertions count datagrams and compare messages, never clocks: the
retry schedule is shortened so the suite stays fast, and only its *shape* (how many sends, with
which request id, before TCP) is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random

import pytest

from resolver.errors import Outcome
from resolver.protocols.handle import codec
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    Envelope, ErrorResponse, Header, Message, ResolutionRequest, ResolutionResponse,
    SiteInfoResponse, envelope_flags,
)  # fmt: skip
from resolver.protocols.handle.tcp import FrameBuffer
from resolver.protocols.handle.udp import Reassembler, split
from resolver.upstream.client import (
    DEFAULT_FLAGS, HandleClient, UpstreamUnavailable, digest_matches, new_request_id, prepare,
)  # fmt: skip
from resolver.values import HandleValue, Interface, ServerInfo, SiteInfo

FAST = (0.05, 0.05, 0.05)  # the reference schedule's shape, shortened
HANDLE = b"88.118.8/demo-1"
URL = HandleValue(1, "URL", b"https://example.com/sn/demo-1", timestamp=1767225600)


def run(coro, limit: float = 20.0):
    async def bounded():
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


def answer(data: bytes, rc: int = 1, body=None, *, version=None, request_id=None) -> bytes:
    """The reply a server would give to the whole request message ``data``."""
    env = Envelope.from_wire(data)
    if request_id is not None:
        env = Envelope(env.major, env.minor, env.flags, env.session_id, request_id, 0, env.length)
    payload = data[C.ENVELOPE_SIZE :]
    header = Header.from_wire(payload)
    if body is None:
        if rc == 1:
            req = Message.from_wire(data).body
            body = ResolutionResponse.of(req.handle, (URL,))
        else:
            body = ErrorResponse(b"scripted")
    return codec.respond(env, payload, header, rc, body, version=version)


class UdpScript(asyncio.DatagramProtocol):
    """Records every datagram; ``behave(self, data)`` returns the datagrams to send back."""

    def __init__(self, behave) -> None:
        self.behave = behave
        self.received: list[bytes] = []
        self.reassembler = Reassembler()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.append(data)
        for out in self.behave(self, data) or ():
            self.transport.sendto(out, addr)


class TcpScript:
    """Per frame, ``behave(frame)`` returns bytes to write, or None to hang up."""

    def __init__(self, behave) -> None:
        self.behave = behave
        self.frames: list[bytes] = []

    async def __call__(self, reader, writer) -> None:
        buf = FrameBuffer()
        try:
            while data := await reader.read(65536):
                for _env, frame in buf.feed(data):
                    self.frames.append(frame)
                    out = self.behave(frame)
                    if out is None:
                        return
                    writer.write(out)
                    await writer.drain()
        finally:
            writer.close()


async def servers(udp_behave=None, tcp_behave=None):
    """Start a UDP and/or a TCP script on one port number; returns (port, udp, tcp, closers)."""
    loop = asyncio.get_running_loop()
    for _ in range(50):
        udp = tcp = None
        closers = []
        if udp_behave is not None:
            transport, udp = await loop.create_datagram_endpoint(
                lambda: UdpScript(udp_behave), local_addr=("127.0.0.1", 0))  # fmt: skip
            closers.append(transport.close)
            port = transport.get_extra_info("sockname")[1]
        else:
            port = 0
        if tcp_behave is not None:
            tcp = TcpScript(tcp_behave)
            try:
                server = await asyncio.start_server(tcp, "127.0.0.1", port)
            except OSError:  # the UDP port number is taken for TCP: pick another
                for close in closers:
                    close()
                continue
            closers.append(server.close)
            port = server.sockets[0].getsockname()[1]
        return port, udp, tcp, closers
    raise AssertionError("no port free for both UDP and TCP")


@contextlib.asynccontextmanager
async def scripted(udp_behave=None, tcp_behave=None):
    """``servers`` for an ``async with``: (port, udp, tcp), closed on the way out."""
    port, udp, tcp, closers = await servers(udp_behave, tcp_behave)
    try:
        yield port, udp, tcp
    finally:
        for close in closers:
            close()


def free_port() -> int:
    """A port number nobody listens on (UDP or TCP) right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- encoding ---------------------------------------------------------------------------------
GOLDEN_ENV = "020102010000000001020304000000000000003d"
GOLDEN_MSG = ("000000010000000019000000ffff00006955b900000000210000001538382e3131382e382f534e2d"
              "323032362d303030310000000000000000" "00000000")  # fmt: skip
GOLDEN_FILTERED = ("000000300000001538382e3131382e382f534e2d323032362d303030310000000200000001"
                   "00000064000000010000000355524c00000000")  # fmt: skip


def test_request_is_the_golden_vector():
    req = prepare(C.OpCode.RESOLUTION, ResolutionRequest(b"88.118.8/SN-2026-0001"),
                  opflags=0x19000000, request_id=0x01020304, version=(2, 1), suggest=(2, 1),
                  expiration=0x6955B900)  # fmt: skip
    assert req.wire.hex() == GOLDEN_ENV + GOLDEN_MSG
    assert req.digested == req.wire[20:-4]  # header + body, no credential


def test_filtered_request_is_the_golden_vector():
    req = prepare(C.OpCode.RESOLUTION,
                  ResolutionRequest(b"88.118.8/SN-2026-0001", (1, 100), (b"URL",)),
                  opflags=0x19000000, request_id=0x01020304, version=(2, 1), suggest=(2, 1),
                  expiration=0x6955B900)  # fmt: skip
    assert req.wire.hex().endswith(GOLDEN_FILTERED)


def test_default_request_is_version_2_10_suggesting_ours_with_reference_flags():
    req = prepare(C.OpCode.RESOLUTION, ResolutionRequest(HANDLE))
    msg = Message.from_wire(req.wire)
    assert req.wire[:4] == bytes((2, 10, 2, 11))
    assert msg.envelope.suggested == (2, 11)
    assert msg.header.opflags == DEFAULT_FLAGS == 0x19000000
    assert msg.header.site_serial == 0xFFFF and msg.header.rc == 0
    assert msg.body == ResolutionRequest(HANDLE)


def test_request_ids_are_random_and_positive():
    ids = [new_request_id() for _ in range(2000)]
    assert all(0 < i <= 0x7FFFFFFF for i in ids)
    assert len(set(ids)) > 1990
    assert len({prepare(1, ResolutionRequest(HANDLE)).request_id for _ in range(50)}) > 45


@pytest.mark.parametrize("version, code, algo", [
    ((2, 0), C.HASH_MD5_OLD, hashlib.md5), ((2, 1), C.HASH_SHA1, hashlib.sha1),
    ((2, 6), C.HASH_SHA1, hashlib.sha1), ((2, 7), C.HASH_SHA256, hashlib.sha256),
    ((2, 11), C.HASH_SHA256, hashlib.sha256),
])  # fmt: skip
def test_digest_check_accepts_each_hash_and_rejects_others(version, code, algo):
    req = prepare(1, ResolutionRequest(HANDLE), opflags=DEFAULT_FLAGS | C.FLAG_REQUEST_DIGEST)
    reply = Message.from_wire(answer(req.wire, version=version))
    assert reply.digest == (code, algo(req.digested).digest())
    assert digest_matches(reply, req)
    other = prepare(1, ResolutionRequest(b"88.118.8/demo-2"),
                    opflags=DEFAULT_FLAGS | C.FLAG_REQUEST_DIGEST, request_id=req.request_id)  # fmt: skip
    assert not digest_matches(reply, other)
    plain = prepare(1, ResolutionRequest(HANDLE), request_id=req.request_id)
    assert not digest_matches(Message.from_wire(answer(plain.wire)), req)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        HandleClient(udp_retry=())
    with pytest.raises(ValueError):
        run(HandleClient().resolve(HANDLE, server=("127.0.0.1", 1), proto="quic"))


# -- UDP --------------------------------------------------------------------------------------
def test_udp_reply_is_returned_with_its_values():
    async def main():
        async with scripted(lambda s, d: [answer(d)]) as (port, udp, _):
            reply = await HandleClient(udp_retry=FAST).resolve(
                HANDLE, types=["URL"], indexes=[1], server=("127.0.0.1", port), proto="udp")  # fmt: skip
        sent = Message.from_wire(udp.received[0])
        assert sent.body == ResolutionRequest(HANDLE, (1,), (b"URL",))
        assert reply.header.rc == 1 and reply.body.values == (URL,)
        assert reply.envelope.request_id == sent.envelope.request_id

    run(main())


def test_udp_retries_with_the_same_request_until_answered():
    def third_time(s, d):
        return [answer(d)] if len(s.received) == 3 else []

    async def main():
        async with scripted(third_time) as (port, udp, _):
            client = HandleClient(udp_retry=(0.05, 0.05, 5.0))
            reply = await client.resolve(HANDLE, server=("127.0.0.1", port), proto="udp")
        assert len(udp.received) == 3
        assert udp.received[0] == udp.received[1] == udp.received[2]  # same id, same bytes
        assert reply.header.rc == 1

    run(main())


def test_udp_ignores_strays_and_takes_the_matching_reply():
    def noisy(s, d):
        rid = Envelope.from_wire(d).request_id
        wrong = (rid % 0x7FFFFFFF) + 1
        return [
            b"\x00" * 7,  # garbage
            answer(d, 100, request_id=wrong),  # another request's reply
            d,  # our own request echoed back: not a response
            answer(d)[:-3],  # ours, cut short
            answer(d, 1, ResolutionResponse.of(HANDLE, (URL.replace(index=7),))),  # the one
            answer(d, 100),  # a second reply: too late to matter
        ]

    async def main():
        async with scripted(noisy) as (port, _, _):
            reply = await HandleClient(udp_retry=(5.0,)).resolve(
                HANDLE, server=("127.0.0.1", port), proto="udp")  # fmt: skip
        assert reply.header.rc == 1 and reply.body.values[0].index == 7

    run(main())


def test_udp_multi_packet_reply_in_any_order_with_duplicates():
    big = tuple(HandleValue(i, "PART", bytes([65 + i]) * 500) for i in range(1, 7))
    rng = random.Random(7)

    def chunks(s, d):
        packets = split(answer(d, 1, ResolutionResponse.of(HANDLE, big)))
        assert len(packets) >= 7
        out = packets + packets[:2]
        rng.shuffle(out)
        return out

    async def main():
        async with scripted(chunks) as (port, _, _):
            reply = await HandleClient(udp_retry=(5.0,)).resolve(
                HANDLE, server=("127.0.0.1", port), proto="udp")  # fmt: skip
        assert reply.body.values == big

    run(main())


def test_response_codes_other_than_1_are_returned_not_raised():
    async def main():
        async with scripted(lambda s, d: [answer(d, 100)]) as (port, _, _):
            reply = await HandleClient(udp_retry=FAST).resolve(
                HANDLE, server=("127.0.0.1", port), proto="udp")  # fmt: skip
        assert reply.header.rc == 100 and reply.body == ErrorResponse(b"scripted")

    run(main())


def test_udp_only_gives_up_after_the_schedule():
    async def main():
        async with scripted(lambda s, d: []) as (port, udp, _):
            with pytest.raises(UpstreamUnavailable) as info:
                await HandleClient(udp_retry=FAST).resolve(
                    HANDLE, server=("127.0.0.1", port), proto="udp")  # fmt: skip
        assert info.value.outcome is Outcome.UPSTREAM_UNAVAILABLE
        assert len(udp.received) == len(FAST)
        assert len({Envelope.from_wire(d).request_id for d in udp.received}) == 1

    run(main())


def test_udp_digest_mismatch_is_ignored_like_a_stray():
    def forged_then_real(s, d):
        other = prepare(1, ResolutionRequest(b"88.118.8/other"),
                        opflags=DEFAULT_FLAGS | C.FLAG_REQUEST_DIGEST,
                        request_id=Envelope.from_wire(d).request_id)  # fmt: skip
        forged = answer(other.wire, 1, ResolutionResponse.of(HANDLE, (URL.replace(index=9),)))
        return [forged, answer(d)]

    async def main():
        async with scripted(forged_then_real) as (port, _, _):
            reply = await HandleClient(udp_retry=(5.0,)).resolve(
                HANDLE, server=("127.0.0.1", port), proto="udp", request_digest=True)  # fmt: skip
        assert reply.body.values == (URL,)
        assert reply.header.has(C.FLAG_REQUEST_DIGEST)

    run(main())


def test_large_request_over_udp_only_is_sent_in_packets():
    types = [f"TYPE-{i:04d}" for i in range(60)]

    def reassemble(s, d):
        whole = s.reassembler.feed("peer", d)
        if whole is None:
            return []
        env, payload = whole
        return [answer(env.to_wire()[:16] + len(payload).to_bytes(4, "big") + payload)]

    async def main():
        async with scripted(reassemble) as (port, udp, _):
            reply = await HandleClient(udp_retry=(5.0,)).resolve(
                HANDLE, types=types, server=("127.0.0.1", port), proto="udp")  # fmt: skip
        assert len(udp.received) > 1
        assert all(len(d) <= C.UDP_PACKET and Envelope.from_wire(d).truncated for d in udp.received)
        assert reply.header.rc == 1

    run(main())


# -- TCP and fallback ---------------------------------------------------------------------------
def test_silent_udp_falls_back_to_tcp_after_the_schedule():
    async def main():
        async with scripted(lambda s, d: [], answer) as (port, udp, tcp):
            reply = await HandleClient(udp_retry=FAST).resolve(HANDLE, server=("127.0.0.1", port))
        assert len(udp.received) == len(FAST)
        assert len(tcp.frames) == 1 and tcp.frames[0] == udp.received[0]
        assert reply.header.rc == 1

    run(main())


def test_request_too_big_for_one_packet_goes_straight_to_tcp():
    types = [f"TYPE-{i:04d}" for i in range(60)]

    async def main():
        async with scripted(lambda s, d: [answer(d)], answer) as (port, udp, tcp):
            reply = await HandleClient(udp_retry=FAST).resolve(
                HANDLE, types=types, server=("127.0.0.1", port))  # fmt: skip
        assert udp.received == [] and len(tcp.frames) == 1 and len(tcp.frames[0]) > C.UDP_PACKET
        assert Message.from_wire(tcp.frames[0]).body.types == tuple(t.encode() for t in types)
        assert reply.header.rc == 1

    run(main())


def test_tcp_skips_frames_of_other_requests():
    def other_first(frame):
        rid = Envelope.from_wire(frame).request_id
        return answer(frame, 100, request_id=(rid % 0x7FFFFFFF) + 1) + answer(frame)

    async def main():
        async with scripted(None, other_first) as (port, _, _):
            reply = await HandleClient().resolve(HANDLE, server=("127.0.0.1", port), proto="tcp")
        assert reply.header.rc == 1 and reply.body.values == (URL,)

    run(main())


def test_tcp_digest_is_checked():
    def good(frame):
        return answer(frame)

    def wrong(frame):
        env = Envelope.from_wire(frame)
        other = prepare(1, ResolutionRequest(b"88.118.8/other"),
                        opflags=DEFAULT_FLAGS | C.FLAG_REQUEST_DIGEST, request_id=env.request_id)  # fmt: skip
        return answer(other.wire)

    async def main():
        async with scripted(None, good) as (port, _, _):
            reply = await HandleClient().resolve(HANDLE, server=("127.0.0.1", port), proto="tcp",
                                                 request_digest=True)  # fmt: skip
        assert reply.digest is not None and reply.digest[0] == C.HASH_SHA256
        async with scripted(None, wrong) as (port, _, _):
            with pytest.raises(UpstreamUnavailable, match="digest"):
                await HandleClient().resolve(HANDLE, server=("127.0.0.1", port), proto="tcp",
                                             request_digest=True)  # fmt: skip

    run(main())


@pytest.mark.parametrize("behave", [lambda f: None, lambda f: b""], ids=["hang-up", "silent"])
def test_tcp_without_a_reply_is_unavailable(behave):
    async def main():
        async with scripted(None, behave) as (port, _, tcp):
            with pytest.raises(UpstreamUnavailable) as info:
                await HandleClient(tcp_timeout=0.3).resolve(
                    HANDLE, server=("127.0.0.1", port), proto="tcp")  # fmt: skip
        assert info.value.outcome is Outcome.UPSTREAM_UNAVAILABLE
        assert len(tcp.frames) == 1

    run(main())


def test_nobody_listening_is_unavailable():
    port = free_port()
    with pytest.raises(UpstreamUnavailable) as info:
        run(HandleClient(udp_retry=FAST, tcp_timeout=2.0).resolve(HANDLE, server=("127.0.0.1", port)))
    assert info.value.outcome is Outcome.UPSTREAM_UNAVAILABLE


def test_total_timeout_bounds_the_whole_call():
    async def main():
        async with scripted(lambda s, d: [], lambda f: b"") as (port, _, _):
            with pytest.raises(UpstreamUnavailable, match="within"):
                await HandleClient(udp_retry=(0.1, 0.1), tcp_timeout=30.0,
                                   total_timeout=0.5).resolve(HANDLE, server=("127.0.0.1", port))  # fmt: skip

    run(main())


def test_get_site_info():
    site = SiteInfo(serial=3, attributes=(("desc", "scripted"),), servers=(ServerInfo(
        1, ServerInfo.pack_address("127.0.0.1"), b"", (Interface(2, 0, 2641),)),))  # fmt: skip

    def site_reply(s, d):
        assert Header.from_wire(d, C.ENVELOPE_SIZE).opcode == C.OpCode.GET_SITE_INFO
        return [answer(d, 1, SiteInfoResponse(site.to_bytes()))]

    async def main():
        async with scripted(site_reply) as (port, _, _):
            reply = await HandleClient(udp_retry=FAST).get_site_info(("127.0.0.1", port),
                                                                      request_digest=True)  # fmt: skip
        assert reply.header.rc == 1 and SiteInfo.from_bytes(reply.body.site) == site

    run(main())


def test_envelope_flags_helper_agrees_with_the_client():
    # the suggestion bytes the client writes are the codec's, not a second encoding
    assert prepare(1, ResolutionRequest(HANDLE)).wire[2:4] == envelope_flags().to_bytes(2, "big")
