"""Handle protocol messages: envelope, header, typed bodies and credential — bytes ↔ objects.

Sans-IO: no sockets, no store, no engine.  ``Message.from_wire`` / ``Message.to_wire`` are
exact inverses for every message type (unknown bodies are kept as opaque bytes).  Every length
read from the wire is checked against what is left before it is used; any inconsistency raises
``HandleProtocolError`` (outcome MALFORMED → RC 4).

Layout (RFC 3652 §2.2; handle.md §3.2; all integers big-endian)::

    Envelope (20 bytes, not signed)
      0  u8   major version            2
      1  u8   minor version            1..11
      2  u16  flags                    0x8000 compressed, 0x4000 encrypted, 0x2000 truncated;
                                       low 2 bits of byte 2 = suggested major, byte 3 =
                                       suggested minor (major 0: same as the actual version)
      4  u32  session id
      8  u32  request id               echoed in the response
      12 u32  sequence number          UDP packet number, 0-based
      16 u32  message length           bytes after the envelope (whole message, all packets)
    Header (24 bytes)
      0  u32  op code                  4  u32  response code (0 in requests)
      8  u32  op flags                 12 u16  site-info serial (0xFFFF unknown)
      14 u8   recursion count          15 u8   reserved
      16 u32  expiration time          20 u32  body length
    Body (body length bytes): [request digest, in responses when RD is set] + op-specific part
    Credential: u32 length, then that many bytes (0 = unsigned; the length is always present)

Request digest at the start of a response body (AbstractResponse.takeDigestOfRequest): u8 hash
code + digest (1 MD5 16 B, 2 SHA-1 20 B, 3 SHA-256 32 B), or, for versions below 2.1, the old
format: u32 length + MD5.  The digest covers the request's header and body.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Union

from resolver.errors import InvalidValue, MalformedRequest
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.codes import ResponseCode
from resolver.values import MAX_VALUES, HandleValue, Reader, encode_value, read_value

_ENV = struct.Struct(">BBHIIII")
_HDR = struct.Struct(">IIIHBBII")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")


class HandleProtocolError(MalformedRequest):
    """Malformed Handle message"""


# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    major: int = C.OUR_MAJOR
    minor: int = C.OUR_MINOR
    flags: int = (C.OUR_MAJOR << 8) | C.OUR_MINOR
    session_id: int = 0
    request_id: int = 0
    sequence: int = 0
    length: int = 0

    @classmethod
    def from_wire(cls, data: bytes) -> "Envelope":
        if len(data) < C.ENVELOPE_SIZE:
            raise HandleProtocolError("truncated envelope")
        return cls(*_ENV.unpack_from(data, 0))

    def to_wire(self) -> bytes:
        return _ENV.pack(self.major, self.minor, self.flags, self.session_id, self.request_id,
                         self.sequence, self.length)  # fmt: skip

    @property
    def truncated(self) -> bool:
        return bool(self.flags & C.ENV_TRUNCATED)

    @property
    def compressed(self) -> bool:
        return bool(self.flags & C.ENV_COMPRESSED)

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & C.ENV_ENCRYPTED)

    @property
    def suggested(self) -> tuple[int, int]:
        """The sender's suggested version (HNv9), or the actual one when the suggested major is
        0 (reference ``Encoder.decodeEnvelope``)."""
        major, minor = (self.flags >> 8) & 0x03, self.flags & 0xFF
        if major == 0:
            return self.major, self.minor
        return major, minor


def envelope_flags(truncated: bool = False, suggest: tuple[int, int] = (C.OUR_MAJOR, C.OUR_MINOR)
                   ) -> int:  # fmt: skip
    return (C.ENV_TRUNCATED if truncated else 0) | ((suggest[0] & 0x03) << 8) | (suggest[1] & 0xFF)


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    opcode: int
    rc: int = 0
    opflags: int = 0
    site_serial: int = 0xFFFF
    recursion: int = 0
    reserved: int = 0
    expiration: int = 0
    body_length: int = 0

    @classmethod
    def from_wire(cls, data: bytes, offset: int = 0) -> "Header":
        if len(data) - offset < C.HEADER_SIZE:
            raise HandleProtocolError("truncated message header")
        return cls(*_HDR.unpack_from(data, offset))

    def to_wire(self) -> bytes:
        return _HDR.pack(self.opcode, self.rc, self.opflags, self.site_serial, self.recursion,
                         self.reserved, self.expiration, self.body_length)  # fmt: skip

    def has(self, flag: int) -> bool:
        return bool(self.opflags & flag)


# ---------------------------------------------------------------------------------------------
# Bodies.  Each has ``from_reader(r)`` (reads to r.end exactly) and ``to_wire()``.


def _s(b: bytes) -> bytes:
    return _I32.pack(len(b)) + b


def _ints(xs) -> bytes:
    return _I32.pack(len(xs)) + b"".join(_I32.pack(x) for x in xs)


def _read_ints(r: Reader) -> tuple[int, ...]:
    return tuple(r.i32() for _ in range(r.count((r.end - r.pos) // 4)))


def _read_strs(r: Reader) -> tuple[bytes, ...]:
    return tuple(r.blob() for _ in range(r.count((r.end - r.pos) // 4)))


@dataclasses.dataclass(frozen=True, slots=True)
class ResolutionRequest:
    """OC_RESOLUTION: handle, int4[] indexes, str[] types (empty lists = all values)."""

    handle: bytes
    indexes: tuple[int, ...] = ()
    types: tuple[bytes, ...] = ()

    @classmethod
    def from_reader(cls, r: Reader) -> "ResolutionRequest":
        return cls(r.blob(), _read_ints(r), _read_strs(r))

    def to_wire(self) -> bytes:
        return _s(self.handle) + _ints(self.indexes) + _I32.pack(len(self.types)) + b"".join(
            _s(t) for t in self.types)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class HandleBody:
    """A body that is one handle: delete, list handles/prefixes, home/unhome a prefix."""

    handle: bytes

    @classmethod
    def from_reader(cls, r: Reader) -> "HandleBody":
        return cls(r.blob())

    def to_wire(self) -> bytes:
        return _s(self.handle)


@dataclasses.dataclass(frozen=True, slots=True)
class ValuesBody:
    """Create handle, add value, modify value: handle, int4 n, n encoded values."""

    handle: bytes
    values: tuple[HandleValue, ...] = ()

    @classmethod
    def from_reader(cls, r: Reader) -> "ValuesBody":
        handle = r.blob()
        return cls(handle, tuple(read_value(r) for _ in range(r.count(MAX_VALUES))))

    def to_wire(self) -> bytes:
        return _s(self.handle) + _I32.pack(len(self.values)) + b"".join(
            encode_value(v) for v in self.values)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class RemoveValueRequest:
    handle: bytes
    indexes: tuple[int, ...] = ()

    @classmethod
    def from_reader(cls, r: Reader) -> "RemoveValueRequest":
        return cls(r.blob(), _read_ints(r))

    def to_wire(self) -> bytes:
        return _s(self.handle) + _ints(self.indexes)


@dataclasses.dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    """OC_CHALLENGE_RESPONSE: auth type, key handle, key index, answer."""

    auth_type: bytes
    key_handle: bytes
    key_index: int
    answer: bytes

    @classmethod
    def from_reader(cls, r: Reader) -> "ChallengeAnswer":
        return cls(r.blob(), r.blob(), r.i32(), r.blob())

    def to_wire(self) -> bytes:
        return _s(self.auth_type) + _s(self.key_handle) + _I32.pack(self.key_index) + _s(self.answer)


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyRequest:
    """OC_VERIFY_RESPONSE: key handle, key index, nonce, request digest, answer."""

    key_handle: bytes
    key_index: int
    nonce: bytes
    digest: bytes
    answer: bytes

    @classmethod
    def from_reader(cls, r: Reader) -> "VerifyRequest":
        return cls(r.blob(), r.i32(), r.blob(), r.blob(), r.blob())

    def to_wire(self) -> bytes:
        return (_s(self.key_handle) + _I32.pack(self.key_index) + _s(self.nonce) + _s(self.digest)
                + _s(self.answer))  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Opaque:
    """A body this node does not interpret (sessions, replication, IDIS login): kept verbatim."""

    data: bytes = b""

    @classmethod
    def from_reader(cls, r: Reader) -> "Opaque":
        return cls(r.raw(r.end - r.pos))

    def to_wire(self) -> bytes:
        return self.data


@dataclasses.dataclass(frozen=True, slots=True)
class ResolutionResponse:
    """RC 1 to OC_RESOLUTION: handle, then ``int4 n`` + n encoded values (kept encoded)."""

    handle: bytes
    values_wire: bytes = b"\0\0\0\0"

    @classmethod
    def from_reader(cls, r: Reader) -> "ResolutionResponse":
        handle = r.blob()
        start = r.pos
        for _ in range(r.count(MAX_VALUES)):
            read_value(r)
        return cls(handle, bytes(r.buf[start : r.pos]))

    @property
    def values(self) -> tuple[HandleValue, ...]:
        r = Reader(self.values_wire)
        return tuple(read_value(r) for _ in range(r.count(MAX_VALUES)))

    @classmethod
    def of(cls, handle: bytes, values) -> "ResolutionResponse":
        return cls(handle, _I32.pack(len(values)) + b"".join(encode_value(v) for v in values))

    def to_wire(self) -> bytes:
        return _s(self.handle) + self.values_wire


@dataclasses.dataclass(frozen=True, slots=True)
class SiteInfoResponse:
    """RC 1 to OC_GET_SITE_INFO: the HS_SITE record (resolver.values.SiteInfo bytes)."""

    site: bytes

    @classmethod
    def from_reader(cls, r: Reader) -> "SiteInfoResponse":
        return cls(r.raw(r.end - r.pos))

    def to_wire(self) -> bytes:
        return self.site


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorResponse:
    """Any error code without a body of its own: a UTF8-String message (may be empty)."""

    message: bytes = b""

    @classmethod
    def from_reader(cls, r: Reader) -> "ErrorResponse":
        return cls(r.blob())

    def to_wire(self) -> bytes:
        return _s(self.message)


@dataclasses.dataclass(frozen=True, slots=True)
class ReferralResponse:
    """RC 302/303: referral handle (may be empty), then optionally ``int4 n`` + values (the
    reference ``ServiceReferralResponse``; a prefix referral has an empty handle and the
    ``HS_SITE.PREFIX`` / ``HS_SERV.PREFIX`` values, handle.md §3.4)."""

    handle: bytes
    values_wire: bytes = b""

    @classmethod
    def from_reader(cls, r: Reader) -> "ReferralResponse":
        handle = r.blob()
        start = r.pos
        if r.pos < r.end:
            for _ in range(r.count(MAX_VALUES)):
                read_value(r)
        return cls(handle, bytes(r.buf[start : r.pos]))

    @classmethod
    def of(cls, handle: bytes, values) -> "ReferralResponse":
        return cls(handle, _I32.pack(len(values)) + b"".join(encode_value(v) for v in values))

    @property
    def values(self) -> tuple[HandleValue, ...]:
        """The referral values (none when the body ends after the handle)."""
        if not self.values_wire:
            return ()
        r = Reader(self.values_wire)
        return tuple(read_value(r) for _ in range(r.count(MAX_VALUES)))

    def to_wire(self) -> bytes:
        return _s(self.handle) + self.values_wire


@dataclasses.dataclass(frozen=True, slots=True)
class ChallengeBody:
    """RC 402: the nonce the client must answer (RD digest always precedes it)."""

    nonce: bytes

    @classmethod
    def from_reader(cls, r: Reader) -> "ChallengeBody":
        return cls(r.blob())

    def to_wire(self) -> bytes:
        return _s(self.nonce)


def _whole(cls, data: bytes):
    """``cls.from_reader`` over all of ``data``; trailing bytes or overruns are malformed."""
    r = Reader(bytes(data))
    try:
        body = cls.from_reader(r)
    except InvalidValue as exc:
        raise HandleProtocolError(f"bad {cls.__name__}: {exc}") from None
    if not r.at_end():
        raise HandleProtocolError(f"trailing bytes after the {cls.__name__}")
    return body


@dataclasses.dataclass(frozen=True, slots=True)
class CreateHandleResponse:
    """RC 1 to OC_CREATE_HANDLE (HNv9 ``Encoder.encodeCreateHandleResponse``): the created
    handle as a str — the minted one when the MINT flag was set — or nothing (``None``: an
    empty body, as pre-HNv9 servers answer)."""

    handle: bytes | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> "CreateHandleResponse":
        return cls(None if r.at_end() else r.blob())

    @classmethod
    def from_wire(cls, data: bytes) -> "CreateHandleResponse":
        return _whole(cls, data)

    def to_wire(self) -> bytes:
        return b"" if self.handle is None else _s(self.handle)


@dataclasses.dataclass(frozen=True, slots=True)
class ListHandlesResponse:
    """RC 1 to OC_LIST_HANDLES and OC_LIST_HOMED_NAS (``encodeListHandlesResponse`` /
    ``encodeListNAsResponse``): ``int4 n`` + n str handles.  A long list comes as several
    such messages, every one but the last with the CN (continuous) op flag."""

    handles: tuple[bytes, ...] = ()

    @classmethod
    def from_reader(cls, r: Reader) -> "ListHandlesResponse":
        return cls(_read_strs(r))

    @classmethod
    def from_wire(cls, data: bytes) -> "ListHandlesResponse":
        return _whole(cls, data)

    def to_wire(self) -> bytes:
        return _I32.pack(len(self.handles)) + b"".join(_s(h) for h in self.handles)


Body = Union[ResolutionRequest, HandleBody, ValuesBody, RemoveValueRequest, ChallengeAnswer,
             VerifyRequest, Opaque, ResolutionResponse, SiteInfoResponse, ErrorResponse,
             ReferralResponse, ChallengeBody, CreateHandleResponse,
             ListHandlesResponse]  # fmt: skip

_EMPTY_BODY_REQUESTS = {C.OpCode.GET_SITE_INFO, C.OpCode.LIST_HOMED_NAS}
REQUEST_BODIES: dict[int, type] = {
    C.OpCode.RESOLUTION: ResolutionRequest,
    C.OpCode.CREATE_HANDLE: ValuesBody,
    C.OpCode.DELETE_HANDLE: HandleBody,
    C.OpCode.ADD_VALUE: ValuesBody,
    C.OpCode.REMOVE_VALUE: RemoveValueRequest,
    C.OpCode.MODIFY_VALUE: ValuesBody,
    C.OpCode.LIST_HANDLES: HandleBody,
    C.OpCode.LIST_NAS: HandleBody,
    C.OpCode.CHALLENGE_RESPONSE: ChallengeAnswer,
    C.OpCode.VERIFY_RESPONSE: VerifyRequest,
    C.OpCode.HOME_NA: HandleBody,
    C.OpCode.UNHOME_NA: HandleBody,
}


def _response_body_type(opcode: int, rc: int) -> type:
    if rc == 1:
        if opcode == C.OpCode.RESOLUTION:
            return ResolutionResponse
        if opcode == C.OpCode.GET_SITE_INFO:
            return SiteInfoResponse
        return Opaque
    if rc in (302, 303):
        return ReferralResponse
    if rc == 402:
        return ChallengeBody
    return ErrorResponse


DIGEST_SIZES = {C.HASH_MD5: 16, C.HASH_SHA1: 20, C.HASH_SHA256: 32}


# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One whole message: envelope, header, body, request digest (responses) and credential."""

    envelope: Envelope
    header: Header
    body: Body
    digest: tuple[int, bytes] | None = None  # (hash code, digest) in a response with RD set
    credential: bytes = b""

    @property
    def is_response(self) -> bool:
        return self.header.rc != 0

    def summary(self, max_text: int | None = None) -> str:
        """``RC 100 HANDLE_NOT_FOUND: <message>`` — a reply's code, its name and, for an
        error, its message (cut to ``max_text`` characters), for people and logs."""
        rc = self.header.rc
        try:
            name = ResponseCode(rc).name
        except ValueError:
            name = "UNKNOWN"
        text = ""
        if isinstance(self.body, ErrorResponse):
            text = self.body.message.decode("utf-8", "replace")[:max_text]
        return f"RC {rc} {name}" + (f": {text}" if text else "")

    @classmethod
    def from_wire(cls, data: bytes) -> "Message":
        """Envelope + whole message (UDP packets already reassembled, or one TCP frame)."""
        env = Envelope.from_wire(data)
        if env.length != len(data) - C.ENVELOPE_SIZE:
            raise HandleProtocolError("message length does not match the envelope")
        return cls.from_parts(env, bytes(data[C.ENVELOPE_SIZE :]))

    @classmethod
    def from_parts(cls, env: Envelope, payload: bytes) -> "Message":
        if len(payload) > C.MAX_MESSAGE:
            raise HandleProtocolError(f"message longer than {C.MAX_MESSAGE} bytes")
        hdr = Header.from_wire(payload)
        end = C.HEADER_SIZE + hdr.body_length
        if end + 4 > len(payload):
            raise HandleProtocolError("body or credential length overruns the message")
        clen = _U32.unpack_from(payload, end)[0]
        if end + 4 + clen != len(payload):
            raise HandleProtocolError("credential length does not match the message")
        r = Reader(payload, C.HEADER_SIZE, end)
        try:
            digest = None
            if hdr.rc != 0 and hdr.opflags & C.FLAG_REQUEST_DIGEST:
                code = r.u8()
                if code == C.HASH_MD5_OLD:
                    r.pos -= 1
                    digest = (code, r.blob())
                elif code in DIGEST_SIZES:
                    digest = (code, r.raw(DIGEST_SIZES[code]))
                else:
                    raise HandleProtocolError(f"unknown request-digest hash code {code}")
            if hdr.rc != 0:
                body_type = _response_body_type(hdr.opcode, hdr.rc)
            elif hdr.opcode in _EMPTY_BODY_REQUESTS and r.pos == r.end:
                body_type = Opaque
            else:
                body_type = REQUEST_BODIES.get(hdr.opcode, Opaque)
            body = body_type.from_reader(r)
            if not r.at_end():
                raise HandleProtocolError("trailing bytes after the message body")
        except InvalidValue as exc:
            raise HandleProtocolError(f"bad message body: {exc}") from None
        return cls(env, hdr, body, digest, bytes(payload[end + 4 :]))

    def payload(self) -> bytes:
        """Header + body + credential: what follows the envelope (body length recomputed)."""
        body = self.body.to_wire()
        if self.digest is not None:
            code, dig = self.digest
            body = (_s(dig) if code == C.HASH_MD5_OLD else bytes((code,)) + dig) + body
        hdr = dataclasses.replace(self.header, body_length=len(body))
        return hdr.to_wire() + body + _U32.pack(len(self.credential)) + self.credential

    def to_wire(self) -> bytes:
        payload = self.payload()
        env = dataclasses.replace(self.envelope, length=len(payload))
        return env.to_wire() + payload
