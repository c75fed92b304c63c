"""An asyncio Handle-protocol client (RFC 3652): one request to one server, UDP then TCP.

Owns the I/O of asking a Handle server something — peering and ``idnode resolve`` reuse it.
Every byte is built and read by the sans-IO codec in ``resolver.protocols.handle``; this module
only moves datagrams and frames and decides when to give up:

* UDP first, with the reference retry schedule (``HandleResolver.udpRetryScheme``: the request
  is sent again after 0.5 s, 1 s and 1.5 s of silence, with the same request id, so a late
  reply to an earlier copy still counts), then TCP.  TCP is used at once when the request does
  not fit one 512-byte packet, or when the server's port refuses UDP.
* A random positive request id per request; a reply is the first message with that id whose
  response code is not 0.  Anything else arriving on the socket (other ids, garbage, a request)
  is ignored.  With ``request_digest`` the reply must carry the digest of our request: over UDP
  a reply without it is ignored like any stray datagram (it could be forged), over TCP it is an
  error.
* Multi-packet replies are put back together by ``udp.Reassembler``; TCP frames by
  ``tcp.FrameBuffer``.
* A reply is returned whatever its response code: callers map codes.  Only "no usable reply"
  raises, as ``UpstreamUnavailable`` (outcome ``UPSTREAM_UNAVAILABLE``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
import time
from typing import Iterable, Sequence

from resolver.errors import IdnodeError, Outcome
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    Envelope, HandleProtocolError, Header, Message, Opaque, ResolutionRequest, envelope_flags,
)  # fmt: skip
from resolver.protocols.handle.tcp import FrameBuffer
from resolver.protocols.handle.udp import Reassembler, split

#: Seconds to wait after each UDP send (HNv9 ``HandleResolver.udpRetryScheme`` = 500/1000/1500 ms).
UDP_RETRY = (0.5, 1.0, 1.5)
#: Reference resolution flags: recursive, cache-certify, public only (handle.md §3.2).
DEFAULT_FLAGS = C.FLAG_RECURSIVE | C.FLAG_CACHE_CERTIFY | C.FLAG_PUBLIC_ONLY
#: A request is valid for 12 hours after it is sent (HNv9 default expiration).
EXPIRATION = 12 * 3600
#: HNv9 clients write 2.10 when they do not know the server and suggest what they speak.
CLIENT_VERSION = (2, 10)

_DIGESTS = {C.HASH_MD5_OLD: hashlib.md5, C.HASH_MD5: hashlib.md5, C.HASH_SHA1: hashlib.sha1,
            C.HASH_SHA256: hashlib.sha256}  # fmt: skip
_PROTOS = ("auto", "udp", "tcp")


class UpstreamUnavailable(IdnodeError):
    """The Handle server did not answer"""

    outcome = Outcome.UPSTREAM_UNAVAILABLE


class _NoUdp(Exception):
    """UDP is refused by the peer (ICMP port unreachable): try TCP at once."""


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request ready to send: its whole message, id and the bytes its digest covers."""

    wire: bytes
    request_id: int
    digested: bytes  # header + body of the request (RD digest input)
    want_digest: bool


def _text(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("utf-8")


def new_request_id() -> int:
    return secrets.randbelow(0x7FFFFFFF) + 1


def prepare(opcode: int, body, *, opflags: int = DEFAULT_FLAGS, request_id: int | None = None,
            version: tuple[int, int] = CLIENT_VERSION,
            suggest: tuple[int, int] = (C.OUR_MAJOR, C.OUR_MINOR),
            expiration: int | None = None) -> PreparedRequest:  # fmt: skip
    """Encode one request (through ``Message``): envelope at ``version`` suggesting ``suggest``."""
    rid = new_request_id() if request_id is None else request_id
    if expiration is None:
        expiration = int(time.time()) + EXPIRATION
    msg = Message(
        Envelope(version[0], version[1], envelope_flags(suggest=suggest), 0, rid, 0, 0),
        Header(opcode, 0, opflags, 0xFFFF, 0, 0, expiration & 0xFFFFFFFF),
        body,
    )  # fmt: skip
    wire = msg.to_wire()
    body_length = Header.from_wire(wire, C.ENVELOPE_SIZE).body_length
    digested = wire[C.ENVELOPE_SIZE : C.ENVELOPE_SIZE + C.HEADER_SIZE + body_length]
    return PreparedRequest(wire, rid, digested, bool(opflags & C.FLAG_REQUEST_DIGEST))


def digest_matches(reply: Message, request: PreparedRequest) -> bool:
    """Does ``reply`` carry the digest of ``request`` (in whatever hash the server chose)?"""
    if reply.digest is None:
        return False
    code, value = reply.digest
    algo = _DIGESTS.get(code)
    return algo is not None and algo(request.digested).digest() == value


class HandleClient:
    """Sends Handle requests; keeps no connection between requests.

    ``udp_retry``: seconds to wait after each UDP send (its length is the number of sends).
    ``tcp_timeout``: bound on connecting to and getting the reply from the TCP port.
    ``total_timeout``: bound on one whole call, UDP and TCP together (None: no extra bound).
    """

    def __init__(self, *, udp_retry: Sequence[float] = UDP_RETRY, tcp_timeout: float = 5.0,
                 total_timeout: float | None = 10.0, flags: int = DEFAULT_FLAGS,
                 version: tuple[int, int] = CLIENT_VERSION,
                 suggest: tuple[int, int] = (C.OUR_MAJOR, C.OUR_MINOR)) -> None:  # fmt: skip
        if not udp_retry or any(t <= 0 for t in udp_retry):
            raise ValueError("udp_retry needs at least one positive wait")
        self.udp_retry = tuple(udp_retry)
        self.tcp_timeout = tcp_timeout
        self.total_timeout = total_timeout
        self.flags = flags
        self.version = version
        self.suggest = suggest

    # -- operations ----------------------------------------------------------------------------
    async def resolve(self, handle: str | bytes, *, types: Iterable[str | bytes] = (),
                      indexes: Iterable[int] = (), server: tuple[str, int] = ("127.0.0.1", 2641),
                      proto: str = "auto", request_digest: bool = False,
                      authoritative: bool = False) -> Message:  # fmt: skip
        """OC_RESOLUTION of ``handle``; the reply message, whatever its response code."""
        body = ResolutionRequest(_text(handle), tuple(int(i) for i in indexes),
                                 tuple(_text(t) for t in types))  # fmt: skip
        flags = self.flags
        if request_digest:
            flags |= C.FLAG_REQUEST_DIGEST
        if authoritative:
            flags |= C.FLAG_AUTHORITATIVE
        return await self.send(C.OpCode.RESOLUTION, body, server=server, proto=proto,
                               opflags=flags)  # fmt: skip

    async def get_site_info(self, server: tuple[str, int], *, proto: str = "auto",
                            request_digest: bool = False) -> Message:  # fmt: skip
        """OC_GET_SITE_INFO; a successful reply's body is a ``SiteInfoResponse``."""
        flags = self.flags | (C.FLAG_REQUEST_DIGEST if request_digest else 0)
        return await self.send(C.OpCode.GET_SITE_INFO, Opaque(b""), server=server, proto=proto,
                               opflags=flags)  # fmt: skip

    async def send(self, opcode: int, body, *, server: tuple[str, int], proto: str = "auto",
                   opflags: int | None = None) -> Message:  # fmt: skip
        """Any request: encode, send by ``proto`` ("auto": UDP then TCP), return the reply."""
        if proto not in _PROTOS:
            raise ValueError(f"proto must be one of {', '.join(_PROTOS)}, not {proto!r}")
        request = prepare(opcode, body, opflags=self.flags if opflags is None else opflags,
                          version=self.version, suggest=self.suggest)  # fmt: skip
        host, port = server
        try:
            async with asyncio.timeout(self.total_timeout):
                return await self._exchange(request, (host, int(port)), proto)
        except TimeoutError:
            raise UpstreamUnavailable(f"no reply from {host}:{port} within "
                                      f"{self.total_timeout:g} s") from None  # fmt: skip

    async def _exchange(self, request: PreparedRequest, server: tuple[str, int],
                        proto: str) -> Message:  # fmt: skip
        host, port = server
        if proto == "tcp" or (proto == "auto" and len(request.wire) > C.UDP_PACKET):
            return await self._tcp(request, server)
        try:
            reply = await self._udp(request, server)
        except _NoUdp:
            if proto == "udp":
                raise UpstreamUnavailable(f"{host}:{port} refused UDP") from None
            reply = None
        except OSError as exc:
            if proto == "udp":
                raise UpstreamUnavailable(f"UDP to {host}:{port} failed: {exc}") from None
            reply = None
        if reply is not None:
            return reply
        if proto == "udp":
            raise UpstreamUnavailable(
                f"no UDP reply from {host}:{port} after {len(self.udp_retry)} tries")  # fmt: skip
        return await self._tcp(request, server)

    # -- UDP -----------------------------------------------------------------------------------
    async def _udp(self, request: PreparedRequest, server: tuple[str, int]) -> Message | None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _UdpExchange(request), remote_addr=server)  # fmt: skip
        try:
            packets = split(request.wire)
            for wait in self.udp_retry:
                for packet in packets:
                    transport.sendto(packet)
                try:
                    return await asyncio.wait_for(asyncio.shield(proto.done), wait)
                except TimeoutError:
                    continue
            return None
        finally:
            transport.close()
            if proto.done.done() and not proto.done.cancelled():
                proto.done.exception()  # a refusal that came too late: seen, not logged

    # -- TCP -----------------------------------------------------------------------------------
    async def _tcp(self, request: PreparedRequest, server: tuple[str, int]) -> Message:
        host, port = server
        writer = None
        try:
            async with asyncio.timeout(self.tcp_timeout):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(request.wire)
                frames = FrameBuffer()
                while True:
                    data = await reader.read(65536)
                    if not data:
                        raise UpstreamUnavailable(f"{host}:{port} closed the connection "
                                                  "without a reply")  # fmt: skip
                    for env, frame in frames.feed(data):
                        if env.request_id != request.request_id:
                            continue  # not ours (a pipelining peer's leftovers)
                        reply = Message.from_wire(frame)
                        if not reply.is_response:
                            continue
                        if request.want_digest and not digest_matches(reply, request):
                            raise UpstreamUnavailable(f"{host}:{port} replied without the "
                                                      "digest of the request")  # fmt: skip
                        return reply
        except TimeoutError:
            raise UpstreamUnavailable(f"no TCP reply from {host}:{port} within "
                                      f"{self.tcp_timeout:g} s") from None  # fmt: skip
        except HandleProtocolError as exc:
            raise UpstreamUnavailable(
                f"malformed reply from {host}:{port}: {exc.message}") from None  # fmt: skip
        except OSError as exc:
            raise UpstreamUnavailable(f"TCP to {host}:{port} failed: {exc}") from None
        finally:
            if writer is not None:
                writer.close()


class _UdpExchange(asyncio.DatagramProtocol):
    """Receives for one request: sets ``done`` with the first acceptable reply."""

    def __init__(self, request: PreparedRequest) -> None:
        self.request = request
        self.done: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.reassembler = Reassembler(max_messages=4)

    def datagram_received(self, data: bytes, addr) -> None:
        if self.done.done():
            return
        try:
            env = Envelope.from_wire(data)
            if env.request_id != self.request.request_id:
                return  # stray: another request's reply, or noise
            if env.truncated:
                whole = self.reassembler.feed(addr, data)
                if whole is None:
                    return
                reply = Message.from_parts(*whole)
            else:
                reply = Message.from_wire(data)
        except IdnodeError:
            return  # a broken datagram is no reply; keep waiting for a good one
        if not reply.is_response:
            return
        if self.request.want_digest and not digest_matches(reply, self.request):
            return
        self.done.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError) and not self.done.done():
            self.done.set_exception(_NoUdp())

    def connection_lost(self, exc) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.cancel()  # our own close: nobody waits any more
        else:
            self.done.set_exception(_NoUdp())  # the socket failed under us: try TCP
