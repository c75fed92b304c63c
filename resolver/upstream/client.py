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
* Authenticated requests (``request_authenticated``, ``list_handles``, ``list_homed_prefixes``;
  handle.md §5, RFC 3652 §3.5) go over one TCP connection: the request, then — when the server
  answers RC 402 with a challenge — an OC 200 answer on the same connection with the
  challenge's session id (the server keeps its pending challenges per worker process, so the
  answer must reach the process that issued the challenge).  The answer is computed only for a
  challenge whose digest is that of our request (``auth.challenge_is_for``): signing another
  request's digest would authorize an operation we never asked for.  The final reply is the
  server's answer to the original request (its digest, when RD was set, is the original's).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import secrets
import time
from typing import Iterable, Sequence, Union

from resolver.errors import IdnodeError, MalformedRequest, Outcome
from resolver.protocols.handle import auth as A
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    ChallengeAnswer, ChallengeBody, Envelope, HandleBody, HandleProtocolError, Header,
    ListHandlesResponse, Message, Opaque, ResolutionRequest, envelope_flags,
)  # fmt: skip
from resolver.protocols.handle.tcp import FrameBuffer
from resolver.protocols.handle.udp import Reassembler, split

#: Seconds to wait after each UDP send (HNv9 ``HandleResolver.udpRetryScheme`` = 500/1000/1500 ms).
UDP_RETRY = (0.5, 1.0, 1.5)
#: Reference resolution flags: recursive, cache-certify, public only (handle.md §3.2).
DEFAULT_FLAGS = C.FLAG_RECURSIVE | C.FLAG_CACHE_CERTIFY | C.FLAG_PUBLIC_ONLY
#: Flags of an administrative request: the reply must carry the digest of our request.
ADMIN_FLAGS = C.FLAG_REQUEST_DIGEST
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
            expiration: int | None = None, session_id: int = 0) -> PreparedRequest:  # fmt: skip
    """Encode one request (through ``Message``): envelope at ``version`` suggesting ``suggest``;
    ``session_id``: the challenge's, for an OC 200 answer (handle.md §5)."""
    rid = new_request_id() if request_id is None else request_id
    if expiration is None:
        expiration = int(time.time()) + EXPIRATION
    msg = Message(
        Envelope(version[0], version[1], envelope_flags(suggest=suggest), session_id, rid, 0, 0),
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


@dataclasses.dataclass(frozen=True, slots=True)
class SecretKeyAuth:
    """Prove ``identity`` ("300:88.118.8/ADMIN") with the secret of its HS_SECKEY value."""

    identity: str
    secret: bytes = dataclasses.field(repr=False)

    def answer(self, challenge: A.Challenge, version: tuple[int, int]) -> ChallengeAnswer:
        """The OC 200 body answering ``challenge`` in the reference client's form at
        ``version`` (PBKDF2-HMAC-SHA1 from 2.7, SHA-1 from 2.1; handle.md §5)."""
        index, handle = A.parse_identity(self.identity)
        answer = A.secret_key_answer(bytes(self.secret), challenge.nonce, challenge.digest,
                                     version)  # fmt: skip
        return ChallengeAnswer(A.SECKEY_TYPE, handle.encode("utf-8"), index, answer)


@dataclasses.dataclass(frozen=True, slots=True)
class PublicKeyAuth:
    """Prove ``identity`` with the RSA private key whose public half is its HS_PUBKEY value."""

    identity: str
    private_key: object = dataclasses.field(repr=False)  # an RSA private key (cryptography)

    def answer(self, challenge: A.Challenge, version: tuple[int, int]) -> ChallengeAnswer:
        """The OC 200 body: an RSASSA-PKCS1-v1_5 signature over nonce || request digest,
        SHA-256 from 2.7, SHA-1 before (reference ``Util.getDefaultSigId``)."""
        index, handle = A.parse_identity(self.identity)
        answer = A.public_key_answer(self.private_key, challenge.nonce, challenge.digest,
                                     A.default_signature_alg(version))  # fmt: skip
        return ChallengeAnswer(A.PUBKEY_TYPE, handle.encode("utf-8"), index, answer)


#: What ``request_authenticated`` accepts as credentials.
Auth = Union[SecretKeyAuth, PublicKeyAuth]


def _na_handle(prefix: str | bytes) -> bytes:
    """``88.118.8`` or ``0.NA/88.118.8`` → ``0.NA/88.118.8`` (the form OC 105 carries)."""
    text = _text(prefix)
    return text if b"/" in text else b"0.NA/" + text


class _Conversation:
    """One TCP connection's messages in both directions: send requests, read their replies
    (frames that arrive together are kept for the next read)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 where: str) -> None:  # fmt: skip
        self.reader, self.writer, self.where = reader, writer, where
        self.frames = FrameBuffer()
        self.ready: collections.deque[tuple[Envelope, bytes]] = collections.deque()

    def send(self, request: PreparedRequest) -> None:
        self.writer.write(request.wire)

    async def replies(self, request: PreparedRequest, digested: PreparedRequest | None = None,
                      *, continuous: bool = False) -> list[Message]:  # fmt: skip
        """The reply to ``request`` (by request id; other frames are skipped).  ``digested``:
        whose digest it must carry when that asked for one (default ``request``).  With
        ``continuous`` every successful part flagged CN is collected up to the last one."""
        digested = digested or request
        out: list[Message] = []
        while True:
            while not self.ready:
                data = await self.reader.read(65536)
                if not data:
                    raise UpstreamUnavailable(f"{self.where} closed the connection without a "
                                              "reply")  # fmt: skip
                self.ready.extend(self.frames.feed(data))
            env, frame = self.ready.popleft()
            if env.request_id != request.request_id:
                continue  # not ours (a pipelining peer's leftovers)
            reply = Message.from_wire(frame)
            if not reply.is_response:
                continue
            if digested.want_digest and not digest_matches(reply, digested):
                raise UpstreamUnavailable(f"{self.where} replied without the digest of the "
                                          "request")  # fmt: skip
            out.append(reply)
            if not (continuous and reply.header.rc == 1
                    and reply.header.has(C.FLAG_CONTINUOUS)):  # fmt: skip
                return out


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
        async def talk(conv: _Conversation) -> Message:
            conv.send(request)
            return (await conv.replies(request))[0]

        return await self._on_tcp(server, talk)

    async def _on_tcp(self, server: tuple[str, int], talk):
        """Run ``talk(conversation)`` on a new connection to ``server`` within ``tcp_timeout``;
        every way of getting no usable reply becomes ``UpstreamUnavailable``."""
        host, port = server
        writer = None
        try:
            async with asyncio.timeout(self.tcp_timeout):
                reader, writer = await asyncio.open_connection(host, port)
                return await talk(_Conversation(reader, writer, f"{host}:{port}"))
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

    # -- authenticated requests (TCP) ------------------------------------------------------------
    async def request_authenticated(self, opcode: int, body, auth: Auth | None, *,
                                    server: tuple[str, int], opflags: int = ADMIN_FLAGS
                                    ) -> Message:  # fmt: skip
        """Send ``opcode`` + ``body`` over TCP; on RC 402 answer the challenge with ``auth``
        (OC 200, same connection, the challenge's session id) and return the server's final
        reply, whatever its response code.  ``auth=None`` returns the RC 402 itself.  Raises
        ``UpstreamUnavailable`` when there is no usable reply or the challenge is not for our
        request."""
        return (await self._authenticated(opcode, body, auth, server, opflags, False))[0]

    async def list_handles(self, prefix: str | bytes, auth: Auth | None,
                           *, server: tuple[str, int]) -> tuple[int, list[bytes]]:  # fmt: skip
        """OC_LIST_HANDLES of ``prefix`` (``88.118.8`` or ``0.NA/88.118.8``): (response code,
        every handle of every CN-continued part); the list is empty unless the code is 1."""
        return await self._listing(C.OpCode.LIST_HANDLES, HandleBody(_na_handle(prefix)), auth,
                                   server)  # fmt: skip

    async def list_homed_prefixes(self, auth: Auth | None, *,
                                  server: tuple[str, int]) -> tuple[int, list[bytes]]:  # fmt: skip
        """OC_LIST_HOMED_NAS (server admins): (response code, ``0.NA/<prefix>`` handles)."""
        return await self._listing(C.OpCode.LIST_HOMED_NAS, HandleBody(b""), auth, server)

    async def _listing(self, opcode: int, body, auth, server) -> tuple[int, list[bytes]]:
        parts = await self._authenticated(opcode, body, auth, server, ADMIN_FLAGS, True)
        rc = parts[-1].header.rc
        if rc != 1:
            return rc, []
        handles: list[bytes] = []
        for part in parts:
            data = part.body.to_wire()
            handles.extend(ListHandlesResponse.from_wire(data).handles if data else ())
        return rc, handles

    async def _authenticated(self, opcode: int, body, auth, server: tuple[str, int],
                             opflags: int, continuous: bool) -> list[Message]:  # fmt: skip
        request = prepare(opcode, body, opflags=opflags, version=self.version,
                          suggest=self.suggest)  # fmt: skip

        async def talk(conv: _Conversation) -> list[Message]:
            conv.send(request)
            first = await conv.replies(request, continuous=continuous)
            reply = first[0]
            if reply.header.rc != 402 or auth is None:
                return first
            answer = self._answer_for(reply, request, auth)
            conv.send(answer)
            # The final reply carries the answer's request id and the original's digest.
            return await conv.replies(answer, request, continuous=continuous)

        host, port = server
        try:
            async with asyncio.timeout(self.total_timeout):
                return await self._on_tcp((host, int(port)), talk)
        except TimeoutError:
            raise UpstreamUnavailable(f"no reply from {host}:{port} within "
                                      f"{self.total_timeout:g} s") from None  # fmt: skip

    def _answer_for(self, reply: Message, request: PreparedRequest, auth) -> PreparedRequest:
        """The OC 200 answering the RC 402 ``reply`` to ``request``."""
        if not isinstance(reply.body, ChallengeBody) or reply.digest is None:
            raise UpstreamUnavailable("RC 402 without a challenge nonce and request digest")
        challenge = A.Challenge(reply.body.nonce, reply.digest[0], reply.digest[1])
        if not A.challenge_is_for(challenge, request.digested):
            raise UpstreamUnavailable("the server's challenge is not for our request")
        env = reply.envelope
        # Reference ChallengeResponse: answer at the lower of the challenge's version and
        # the version it suggests.
        version = min((env.major, env.minor), env.suggested)
        try:
            body = auth.answer(challenge, version)
        except MalformedRequest as exc:  # an --auth that is no identity
            raise ValueError(exc.message) from None
        return prepare(C.OpCode.CHALLENGE_RESPONSE, body, opflags=ADMIN_FLAGS,
                       version=self.version, suggest=self.suggest,
                       session_id=env.session_id)  # fmt: skip


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
