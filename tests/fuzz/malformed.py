"""The malformed-input table of the Handle protocol, and the helpers that play it against a node.

Each ``Case`` is one input a client might send and the outcome it must have:

* ``decode`` — ``Message.from_wire`` on the (single) datagram: ``OK`` (it decodes) or
  ``ERROR`` (``HandleProtocolError``, never anything else); ``None`` for multi-packet cases.
* ``udp`` — what the server answers over UDP: a response code, or ``NO_REPLY`` (dropped
  without a reply: truncated or oversized datagrams, responses, incomplete multi-packet
  messages).
* ``tcp`` — the response codes, in order, the server writes back on a connection that carries
  exactly these bytes (then a half-close); ``None`` for inputs that only exist over UDP.
* ``version`` — the (major, minor) every reply must be written at, when the case is about it.
* ``echo`` — whether the replies carry the case's request id; False only where the TCP reply
  answers an "envelope" made of other bytes (garbage, or the inside of a mis-framed message).

Every case gets its own request id (``make(rid)``) so that replies to a batch of datagrams can
be told apart.  The demo data (registry/demo.jsonl) holds prefix 88.118.8 with
88.118.8/demo-1 (URL, EMAIL, HS_ADMIN) and 88.118.8/demo-2; prefix 99.1 is not held.
"""

from __future__ import annotations

import dataclasses
import os
import re
import select
import socket
import struct
import time
from typing import Callable, Iterable, Union

from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    ChallengeAnswer, Envelope, ErrorResponse, HandleBody, Header, Message, Opaque,
    RemoveValueRequest, ResolutionRequest, ResolutionResponse, ValuesBody, VerifyRequest,
    envelope_flags,
)  # fmt: skip
from resolver.protocols.handle.udp import Reassembler, split
from resolver.values import HandleValue
from proc import children

NO_REPLY = None
OK, ERROR = "ok", "error"
DEFAULT_FLAGS = C.FLAG_RECURSIVE | C.FLAG_CACHE_CERTIFY | C.FLAG_PUBLIC_ONLY  # 0x19000000
DEMO = b"88.118.8/demo-1"
OURS = (C.OUR_MAJOR, C.OUR_MINOR)

Data = Union[bytes, tuple[bytes, ...]]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int], Data]
    decode: str | None
    udp: int | None
    tcp: tuple[int, ...] | None
    version: tuple[int, int] | None = None
    control: bool = False  # a valid request that anchors the table, not a malformed input
    echo: bool = True

    @property
    def multi(self) -> bool:
        return isinstance(self.make(1), tuple)


# =============================================================================================
# Builders
# =============================================================================================


def request(rid: int, handle: bytes = DEMO, *, indexes=(), types=(), opcode: int = 1,
            flags: int = DEFAULT_FLAGS, env_flags: int = 0x020B, major: int = 2, minor: int = 11,
            body=None, credential: bytes = b"", rc: int = 0, sequence: int = 0,
            session: int = 0) -> bytes:  # fmt: skip
    """A well-framed message (every length right); resolution of ``handle`` by default."""
    body = body if body is not None else ResolutionRequest(handle, tuple(indexes), tuple(types))
    return Message(Envelope(major, minor, env_flags, session, rid, sequence),
                   Header(opcode, rc, flags, 0xFFFF, 0, 0, 0x6955B900), body,
                   credential=credential).to_wire()  # fmt: skip


def set_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack(">I", value & 0xFFFFFFFF) + data[offset + 4 :]


def fix_length(data: bytes) -> bytes:
    """Make the envelope announce exactly the bytes that follow it."""
    return set_u32(data, 16, len(data) - C.ENVELOPE_SIZE)


def raw_message(rid: int, body: bytes, *, opcode: int = 1, credential: bytes = b"\0\0\0\0",
                body_length: int | None = None, flags: int = DEFAULT_FLAGS) -> bytes:  # fmt: skip
    """Envelope + header + ``body`` bytes as given + ``credential`` bytes as given."""
    n = len(body) if body_length is None else body_length
    hdr = Header(opcode, 0, flags, 0xFFFF, 0, 0, 0x6955B900, n).to_wire()
    env = Envelope(2, 11, 0x020B, 0, rid, 0, 0).to_wire()
    return fix_length(env + hdr + body + credential)


def s(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


def i32(n: int) -> bytes:
    return struct.pack(">I", n & 0xFFFFFFFF)


def tc_packets(rid: int, payload: bytes, *, order: Iterable[int] | None = None,
               announced: int | None = None, chunk: int = C.UDP_PAYLOAD,
               ) -> tuple[bytes, ...]:  # fmt: skip
    """``payload`` (header + body + credential) as multi-packet UDP datagrams."""
    length = len(payload) if announced is None else announced
    pieces = [payload[i : i + chunk] for i in range(0, len(payload), chunk)] or [b""]
    seqs = list(range(len(pieces))) if order is None else list(order)
    out = []
    for seq in seqs:
        env = Envelope(2, 11, envelope_flags(truncated=True), 0, rid, seq, length)
        out.append(env.to_wire() + pieces[seq % len(pieces)])
    return tuple(out)


def payload_of(data: bytes) -> bytes:
    return data[C.ENVELOPE_SIZE :]


# Offsets inside ``request(rid)`` (resolution of 88.118.8/demo-1, no filters): envelope 0..19,
# header 20..43 (body length at 40), handle length 44, handle 48..62, index count 63,
# type count 67, credential length 71; 75 bytes in all.
BASE_LEN = len(request(1))
OFF_BODY_LEN, OFF_HANDLE_LEN, OFF_INDEX_COUNT, OFF_TYPE_COUNT, OFF_CRED = 40, 44, 63, 67, 71
assert BASE_LEN == 75
# In the filtered request (indexes [1, 100], types [URL, EMAIL]): index count 63, type count
# 75, first type length 79, credential length 95; 99 bytes in all.
OFF_F_TYPE_COUNT, OFF_F_TYPE0, OFF_F_CRED = 75, 79, 95


def filtered(rid: int) -> bytes:
    return request(rid, indexes=(1, 100), types=(b"URL", b"EMAIL"))


_F = filtered(1)
assert len(_F) == 99 and _F[OFF_F_TYPE_COUNT : OFF_F_TYPE_COUNT + 4] == b"\0\0\0\x02"
assert _F[OFF_F_TYPE0:OFF_F_CRED] == b"\0\0\0\x03URL\0\0\0\x05EMAIL"
assert request(1)[OFF_HANDLE_LEN : OFF_CRED + 4] == b"\0\0\0\x0f" + DEMO + bytes(12)


# =============================================================================================
# The table
# =============================================================================================

CASES: list[Case] = []


def add(name, make, decode, udp, tcp="same", version=None, control=False, echo=True) -> None:
    if tcp == "same":
        tcp = () if udp is NO_REPLY else (udp,)
    CASES.append(Case(name, make, decode, udp, tcp, version, control, echo))


# -- controls: valid requests ------------------------------------------------------------------
add("control-hit", lambda r: request(r), OK, 1, control=True)
add("control-miss", lambda r: request(r, b"88.118.8/none"), OK, 100, control=True)
add("control-not-held", lambda r: request(r, b"99.1/x"), OK, 301, control=True)
add("control-prefix-handle", lambda r: request(r, b"0.NA/88.118.8"), OK, 1, control=True)
add("control-slashless", lambda r: request(r, b"88.118.8"), OK, 1, control=True)
add("control-values-not-found", lambda r: request(r, types=(b"NOPE",)), OK, 200, control=True)
add("control-filtered", filtered, OK, 1, control=True)
add("control-site-info", lambda r: request(r, opcode=2, body=Opaque()), OK, 1, control=True)
add("control-rd-2.0", lambda r: request(r, flags=DEFAULT_FLAGS | C.FLAG_REQUEST_DIGEST, minor=0,
                                         env_flags=0), OK, 1, version=(2, 0), control=True)
add("control-2.1-suggests-2.11", lambda r: request(r, minor=1, env_flags=0x020B), OK, 1,
    version=(2, 11), control=True)  # fmt: skip
add("control-handle-2048-bytes", lambda r: request(r, b"88.118.8/" + b"x" * 2039), OK, 100,
    control=True)  # fmt: skip
add("control-one-big-datagram", lambda r: request(r, types=(b"URL",) * 300), OK, 1, control=True)
add("control-multi-packet", lambda r: tuple(reversed(split(request(r, types=(b"URL",) * 200)))),
    None, 1, None, control=True)  # fmt: skip
add("control-multi-packet-21", lambda r: tuple(split(request(r, types=(b"URL",) * 1400))), None, 1,
    None, control=True)  # fmt: skip
add("control-sequence-1-no-tc", lambda r: request(r, sequence=1), OK, 1, control=True)
add("control-session-id", lambda r: request(r, session=0xDEADBEEF), OK, 1, control=True)
add("control-tc-single-packet", lambda r: request(r, env_flags=0x220B), OK, 1, control=True)
add("control-negative-index", lambda r: request(r, indexes=(-1,)), OK, 200, control=True)

# -- every truncation of a valid request ---------------------------------------------------------
# Without touching the envelope: the datagram is shorter than announced → dropped; on TCP the
# frame never completes.
for n in range(BASE_LEN):
    add(f"truncated-at-{n}", lambda r, n=n: request(r)[:n], ERROR, NO_REPLY)
# With the envelope's length made to match: under 24 bytes there is no header to address a
# reply to; from the header on, the body or credential overruns the message → RC 4.
for n in range(C.ENVELOPE_SIZE, BASE_LEN):
    add(f"truncated-and-relengthed-at-{n}", lambda r, n=n: fix_length(request(r)[:n]), ERROR,
        NO_REPLY if n < C.ENVELOPE_SIZE + C.HEADER_SIZE else 4)  # fmt: skip
# A signed request truncated inside its credential.
SIGNED = b"\x00\x00\x00\x00\x00\x00\x00\x0e88.118.8/ADMIN\x00\x00\x01\x2c" + b"s" * 20
for cut in (1, 4, 10, len(SIGNED) - 1):
    add(f"credential-truncated-by-{cut}",
        lambda r, cut=cut: fix_length(request(r, credential=SIGNED)[:-cut]), ERROR, 4)  # fmt: skip

# -- the envelope's message length against the datagram ----------------------------------------
for delta in (1, 4, 20, 1000):
    add(f"announced-{delta}-more", lambda r, d=delta: set_u32(request(r), 16, BASE_LEN - 20 + d),
        ERROR, NO_REPLY)  # fmt: skip
# Announced shorter: over UDP dropped; over TCP the frame ends early (its credential or body
# overruns → RC 4) and the rest waits for an envelope that never completes.
for delta in (1, 4):
    add(f"announced-{delta}-less", lambda r, d=delta: set_u32(request(r), 16, BASE_LEN - 20 - d),
        ERROR, NO_REPLY, (4,))  # fmt: skip
# Announced zero: on TCP an empty frame (no header: no reply), then the header's first 20
# bytes read as an envelope announcing 0x6955b900 bytes → RC 4.
add("announced-zero", lambda r: set_u32(request(r), 16, 0), ERROR, NO_REPLY, (4,), echo=False,
    version=OURS)  # fmt: skip
for value in (C.MAX_MESSAGE, C.MAX_MESSAGE + 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
    # Over TCP, a frame announcing more than 256 KiB is refused with RC 4 and the connection
    # closed; announcing exactly 256 KiB just waits for bytes that never come.
    add(f"announced-{value:#x}", lambda r, v=value: set_u32(request(r), 16, v), ERROR, NO_REPLY,
        () if value <= C.MAX_MESSAGE else (4,), version=OURS)  # fmt: skip
add("envelope-only-announcing-huge", lambda r: Envelope(request_id=r, length=0xFFFFFFFF).to_wire(),
    ERROR, NO_REPLY, (4,), version=OURS)  # fmt: skip
add("trailing-garbage-after-credential", lambda r: request(r) + b"\xde\xad\xbe", ERROR, NO_REPLY,
    (1,))  # fmt: skip
add("trailing-garbage-relengthed", lambda r: fix_length(request(r) + b"\xde\xad\xbe\xef"), ERROR, 4)
add("trailing-zero-credential-relengthed", lambda r: fix_length(request(r) + bytes(4)), ERROR, 4)

# -- lengths and counts inside the message (envelope length always right) ----------------------
for value in (0, 1, 26, 28, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
    add(f"body-length-{value:#x}", lambda r, v=value: set_u32(request(r), OFF_BODY_LEN, v),
        ERROR, 4)  # fmt: skip
for value in (0, 1, 14, 16, 27, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
    add(f"handle-length-{value:#x}", lambda r, v=value: set_u32(request(r), OFF_HANDLE_LEN, v),
        ERROR, 4)  # fmt: skip
for value in (1, 2, 0x3FFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
    add(f"index-count-{value:#x}", lambda r, v=value: set_u32(request(r), OFF_INDEX_COUNT, v),
        ERROR, 4)  # fmt: skip
for value in (1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
    add(f"type-count-{value:#x}", lambda r, v=value: set_u32(request(r), OFF_TYPE_COUNT, v),
        ERROR, 4)  # fmt: skip
for value in (3, 5, 0x7FFFFFFF, 0xFFFFFFFF):
    add(f"filtered-type-count-{value:#x}",
        lambda r, v=value: set_u32(filtered(r), OFF_F_TYPE_COUNT, v), ERROR, 4)  # fmt: skip
for value in (2, 4, 100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
    add(f"type-length-{value:#x}", lambda r, v=value: set_u32(filtered(r), OFF_F_TYPE0, v),
        ERROR, 4)  # fmt: skip
for value in (1, 0x7FFFFFFF, 0xFFFFFFFF):
    add(f"credential-length-{value:#x}", lambda r, v=value: set_u32(request(r), OFF_CRED, v),
        ERROR, 4)  # fmt: skip
    add(f"filtered-credential-length-{value:#x}",
        lambda r, v=value: set_u32(filtered(r), OFF_F_CRED, v), ERROR, 4)  # fmt: skip
add("trailing-bytes-inside-body",
    lambda r: raw_message(r, s(DEMO) + i32(0) + i32(0) + b"junk"), ERROR, 4)  # fmt: skip
add("body-missing-type-list", lambda r: raw_message(r, s(DEMO) + i32(0)), ERROR, 4)
add("body-missing-both-lists", lambda r: raw_message(r, s(DEMO)), ERROR, 4)
add("empty-resolution-body", lambda r: raw_message(r, b""), ERROR, 4)
add("no-credential-length", lambda r: raw_message(r, s(DEMO) + i32(0) + i32(0), credential=b""),
    ERROR, 4)  # fmt: skip
add("two-byte-credential-length", lambda r: raw_message(r, s(DEMO) + i32(0) + i32(0),
                                                         credential=b"\0\0"), ERROR, 4)  # fmt: skip
add("index-count-without-indexes",
    lambda r: raw_message(r, s(DEMO) + i32(3) + i32(1) + i32(0)), ERROR, 4)  # fmt: skip

# -- protocol versions ---------------------------------------------------------------------------
for major in (0, 1, 3, 4, 255):
    add(f"major-version-{major}", lambda r, m=major: request(r, major=m, minor=1, env_flags=0),
        OK, 4, version=OURS)  # fmt: skip
    add(f"major-version-{major}-with-rd",
        lambda r, m=major: request(r, major=m, flags=DEFAULT_FLAGS | C.FLAG_REQUEST_DIGEST,
                                   env_flags=0), OK, 4, version=OURS)  # fmt: skip
add("major-version-3-suggesting-3", lambda r: request(r, major=3, minor=0, env_flags=0x0300), OK, 4,
    version=OURS)  # fmt: skip
add("major-version-1-bad-body", lambda r: set_u32(request(r, major=1), OFF_HANDLE_LEN, 0xFFFF),
    ERROR, 4, version=OURS)  # fmt: skip
# Suggested major 0 is "no suggestion" (reference Encoder.decodeEnvelope): reply at 2.11.
add("suggested-major-0-minor-5", lambda r: request(r, env_flags=0x0005), OK, 1, version=OURS)
add("suggested-version-3.9", lambda r: request(r, env_flags=0x0309), OK, 1, version=OURS)

# -- envelope flags ------------------------------------------------------------------------------
add("compressed", lambda r: request(r, env_flags=0x820B), OK, 4)
add("encrypted", lambda r: request(r, env_flags=0x420B), OK, 4)
add("compressed-and-encrypted", lambda r: request(r, env_flags=0xC20B), OK, 4)
add("compressed-unknown-handle", lambda r: request(r, b"99.1/x", env_flags=0x820B), OK, 4)

# -- responses sent to the server are never answered ---------------------------------------------
add("response-rc-1", lambda r: request(r, rc=1, body=ResolutionResponse.of(DEMO, ())), OK, NO_REPLY)
for rc in (2, 4, 100, 200, 301, 0xFFFFFFFF):
    add(f"response-rc-{rc:#x}", lambda r, rc=rc: request(r, rc=rc, body=ErrorResponse(b"")), OK,
        NO_REPLY)  # fmt: skip
RD_RESPONSE = Header(1, 100, C.FLAG_REQUEST_DIGEST)
add("response-with-rd", lambda r: Message(Envelope(request_id=r), RD_RESPONSE, ErrorResponse(),
                                          (C.HASH_SHA256, bytes(32))).to_wire(), OK, NO_REPLY)
add("response-undecodable",
    lambda r: set_u32(request(r, rc=100, body=ErrorResponse(b"")), 48, 0xFFFF), ERROR, NO_REPLY)
add("response-wrong-major", lambda r: request(r, rc=100, major=7, body=ErrorResponse(b"")), OK,
    NO_REPLY)  # fmt: skip

# -- op codes: resolution, site info and the admin operations are served; the rest is RC 5 -------
V = (HandleValue(1, "URL", b"https://example.com/x"),)
TYPED = {
    C.OpCode.CREATE_HANDLE: ValuesBody(b"88.118.8/new", V),
    C.OpCode.DELETE_HANDLE: HandleBody(DEMO),
    C.OpCode.ADD_VALUE: ValuesBody(DEMO, V),
    C.OpCode.REMOVE_VALUE: RemoveValueRequest(DEMO, (1,)),
    C.OpCode.MODIFY_VALUE: ValuesBody(DEMO, V),
    C.OpCode.LIST_HANDLES: HandleBody(b"0.NA/88.118.8"),
    C.OpCode.LIST_NAS: HandleBody(b"0.NA/88.118"),
    C.OpCode.CHALLENGE_RESPONSE: ChallengeAnswer(b"HS_SECKEY", b"88.118.8/ADMIN", 300, b"x" * 20),
    C.OpCode.VERIFY_RESPONSE: VerifyRequest(b"88.118.8/ADMIN", 300, b"n" * 16, b"d" * 32, b"a"),
    C.OpCode.HOME_NA: HandleBody(b"0.NA/88.118.9"),
    C.OpCode.UNHOME_NA: HandleBody(b"0.NA/88.118.8"),
}
#: Admin operations (registry.native_admin) unauthenticated: an RC 402 challenge; an OC 200
#: answer to a challenge never issued: RC 403 (authentication failed).
ADMIN_RC = {op: 402 for op in (C.OpCode.CREATE_HANDLE, C.OpCode.DELETE_HANDLE,
                               C.OpCode.ADD_VALUE, C.OpCode.REMOVE_VALUE, C.OpCode.MODIFY_VALUE,
                               C.OpCode.LIST_HANDLES, C.OpCode.HOME_NA, C.OpCode.UNHOME_NA,
                               C.OpCode.LIST_HOMED_NAS)}  # fmt: skip
ADMIN_RC[C.OpCode.CHALLENGE_RESPONSE] = 403
for op in C.OpCode:
    if op in (C.OpCode.RESOLUTION, C.OpCode.GET_SITE_INFO):
        continue
    body = TYPED.get(op, Opaque(b"\x00\x00\x00\x00" if op != C.OpCode.RESERVED else b""))
    add(f"op-{op.name.lower()}", lambda r, op=op, b=body: request(r, opcode=op, body=b), OK,
        ADMIN_RC.get(op, 5))  # fmt: skip
for op in (3, 99, 107, 202, 303, 403, 999, 1004, 2000, 2002, 0x7FFFFFFF, 0xFFFFFFFF):
    add(f"op-unknown-{op:#x}", lambda r, op=op: request(r, opcode=op, body=Opaque(b"whatever")),
        OK, 5)  # fmt: skip
for op in (C.OpCode.CREATE_HANDLE, C.OpCode.DELETE_HANDLE, C.OpCode.REMOVE_VALUE,
           C.OpCode.CHALLENGE_RESPONSE, C.OpCode.VERIFY_RESPONSE, C.OpCode.HOME_NA):  # fmt: skip
    # A typed body that does not parse is a protocol error before it is an unsupported op.
    add(f"op-{op.name.lower()}-bad-body",
        lambda r, op=op: raw_message(r, i32(0x7FFFFFF0), opcode=op), ERROR, 4)  # fmt: skip
add("op-create-value-count-huge", lambda r: raw_message(r, s(b"88.118.8/n") + i32(0x7FFFFFFF),
                                                        opcode=100), ERROR, 4)  # fmt: skip
add("op-add-value-bad-utf8-type",
    lambda r: raw_message(r, s(DEMO) + i32(1) + i32(1) + i32(0) + b"\0" + i32(0) + b"\x0e"
                          + s(b"\xff\xfe") + s(b"d") + i32(0), opcode=102), ERROR, 4)  # fmt: skip
add("resolution-with-encrypt-flag", lambda r: request(r, flags=DEFAULT_FLAGS | C.FLAG_ENCRYPT),
    OK, 5)  # fmt: skip
add("site-info-with-encrypt-flag",
    lambda r: request(r, opcode=2, body=Opaque(), flags=C.FLAG_ENCRYPT), OK, 5)  # fmt: skip

# -- identifiers: RC 102 ---------------------------------------------------------------------------
BAD_HANDLES = {
    "empty": b"",
    "slash-only": b"/",
    "empty-suffix": b"88.118.8/",
    "empty-prefix": b"/demo-1",
    "leading-dot": b".88.118/x",
    "trailing-dot": b"88.118./x",
    "double-dot": b"88..118/x",
    "only-dots": b"../x",
    "prefix-256-bytes": b"8" * 256 + b"/x",
    "handle-2049-bytes": b"88.118.8/" + b"x" * 2040,
    "handle-4096-bytes": b"88.118.8/" + b"x" * 4087,
    "handle-60000-bytes": b"88.118.8/" + b"x" * 59991,
    "utf8-ff": b"88.118.8/\xff",
    "utf8-fe-ff": b"88.118.8/\xfe\xff",
    "utf8-overlong-slash": b"88.118.8/\xc0\xaf",
    "utf8-overlong-nul": b"88.118.8/\xc0\x80",
    "utf8-surrogate": b"88.118.8/\xed\xa0\x80",
    "utf8-truncated-sequence": b"88.118.8/\xe8\xae",
    "utf8-lone-continuation": b"88.118.8/\x80abc",
    "utf8-above-u10ffff": b"88.118.8/\xf4\x90\x80\x80",
    "utf8-5-byte-form": b"88.118.8/\xf8\x88\x80\x80\x80",
    "utf8-in-prefix": b"88.1\xff8.8/demo-1",
    "nul": b"88.118.8/demo\x00-1",
    "nul-at-end": b"88.118.8/demo-1\x00",
    "soh": b"88.118.8/\x01",
    "tab": b"88.118.8/demo\t1",
    "newline": b"88.118.8/demo-1\n",
    "carriage-return": b"88.118.8/demo-1\r",
    "unit-separator": b"88.118.8/\x1f",
    "del": b"88.118.8/\x7f",
    "c1-0x80": b"88.118.8/\xc2\x80",
    "c1-0x9f": b"88.118.8/\xc2\x9f",
    "control-in-prefix": b"88.\x01118/x",
    "control-in-slashless": b"88.1\n",
}
for label, handle in BAD_HANDLES.items():
    big = len(handle) > 400
    add(f"handle-{label}", lambda r, h=handle: request(r, h), OK, 102)
    if big:  # the same, as multi-packet UDP
        add(f"handle-{label}-multi-packet", lambda r, h=handle: tuple(split(request(r, h))), None,
            102, None)  # fmt: skip
add("handle-bad-utf8-with-rd", lambda r: request(r, b"88.118.8/\xff",
                                                 flags=DEFAULT_FLAGS | C.FLAG_REQUEST_DIGEST),
    OK, 102)  # fmt: skip
# Requested types are compared as bytes (reference Util.isParentTypeInArray): a type that is
# not UTF-8 matches nothing, whichever path answers.
add("type-not-utf8", lambda r: request(r, types=(b"\xff",)), OK, 200)
add("type-not-utf8-certified",  # CT: the fast path leaves it to the general path
    lambda r: request(r, types=(b"\xff",), flags=DEFAULT_FLAGS | C.FLAG_CERTIFY), OK, 200)
add("type-not-utf8-miss", lambda r: request(r, b"88.118.8/none", types=(b"\xc3\x28",)), OK, 100)
add("type-not-utf8-not-held", lambda r: request(r, b"99.1/x", types=(b"\xff",)), OK, 301)
add("type-not-utf8-with-index", lambda r: request(r, indexes=(1,), types=(b"\xff",)), OK, 1)

# -- multi-packet UDP ----------------------------------------------------------------------------
def BIG(rid: int) -> bytes:
    """A valid resolution payload of 2155 bytes: five packets of at most 492."""
    return payload_of(request(rid, types=(b"URL",) * 300))


assert len(tc_packets(1, BIG(1))) == 5


def gap(rid: int) -> tuple[bytes, ...]:
    """Every byte of the message arrives, but as packets 0 and 2."""
    p = BIG(rid)
    half = len(p) // 2
    env = lambda seq: Envelope(2, 11, 0x220B, 0, rid, seq, len(p)).to_wire()  # noqa: E731
    return (env(0) + p[:half], env(2) + p[half:])


add("tc-never-completes", lambda r: tc_packets(r, BIG(r), order=[0, 1, 2, 3]), None, NO_REPLY, None)
add("tc-only-last-packet", lambda r: tc_packets(r, BIG(r), order=[4]), None, NO_REPLY, None)
add("tc-duplicates-only", lambda r: tc_packets(r, BIG(r), order=[0, 0, 0, 1, 1]), None, NO_REPLY,
    None)  # fmt: skip
add("tc-sequence-beyond-length", lambda r: tc_packets(r, BIG(r), order=[0, 1, 2, 3]) + (
    Envelope(2, 11, 0x220B, 0, r, 0xFFFFFF, len(BIG(r))).to_wire() + b"x" * 187,), None, NO_REPLY,
    None)  # fmt: skip
add("tc-lengths-disagree", lambda r: tc_packets(r, BIG(r), order=[0, 1, 2])
    + tc_packets(r, BIG(r), order=[3, 4], announced=len(BIG(r)) + 1),
    None, NO_REPLY, None)  # fmt: skip
add("tc-announces-over-256-kib", lambda r: tc_packets(r, BIG(r), announced=C.MAX_MESSAGE + 1), None,
    NO_REPLY, None)  # fmt: skip
add("tc-announces-0xffffffff", lambda r: tc_packets(r, BIG(r), announced=0xFFFFFFFF), None,
    NO_REPLY, None)  # fmt: skip
add("tc-more-data-than-announced", lambda r: tc_packets(r, BIG(r), announced=len(BIG(r)) - 100),
    None, NO_REPLY, None)  # fmt: skip
add("tc-gap-in-sequence", gap, None, NO_REPLY, None)
add("tc-envelope-only", lambda r: (Envelope(2, 11, 0x220B, 0, r, 0, 100).to_wire(),), None,
    NO_REPLY, None)  # fmt: skip
add("tc-short-packet", lambda r: (Envelope(2, 11, 0x220B, 0, r, 0, 100).to_wire()[:12],), None,
    NO_REPLY, None)  # fmt: skip
add("tc-complete-bad-body", lambda r: tc_packets(r, payload_of(set_u32(
    request(r, types=(b"URL",) * 300), OFF_TYPE_COUNT, 0x7FFFFFFF))), None, 4, None)  # fmt: skip
add("tc-complete-wrong-major", lambda r: tuple(
    b"\x05" + p[1:] for p in split(request(r, types=(b"URL",) * 300))),
    None, 4, None, version=OURS)  # fmt: skip
add("tc-complete-response",
    lambda r: tuple(split(request(r, rc=100, body=ErrorResponse(b"x" * 900)))),
    None, NO_REPLY, None)  # fmt: skip
add("tc-odd-chunk-sizes", lambda r: tc_packets(r, BIG(r), chunk=100), None, 1, None)

# -- garbage -----------------------------------------------------------------------------------
add("empty-datagram", lambda r: b"", ERROR, NO_REPLY)
add("one-byte", lambda r: b"\x02", ERROR, NO_REPLY)
add("nineteen-bytes", lambda r: request(r)[:19], ERROR, NO_REPLY)
add("zero-envelope", lambda r: bytes(20), ERROR, NO_REPLY)
add("zero-envelope-and-header", lambda r: fix_length(bytes(8) + i32(r) + bytes(4 + 4 + 24)), ERROR,
    4, version=OURS)  # fmt: skip
# Garbage whose first byte is not 2 is a wrong major version: RC 4 is written at ours.
add("all-ff-75-bytes", lambda r: b"\xff" * BASE_LEN, ERROR, NO_REPLY, (4,), echo=False,
    version=OURS)  # fmt: skip
# Other protocols on the Handle port: over TCP their first 20 bytes announce a huge message.
HTTP_GET = b"GET /api/handles/88.118.8/demo-1 HTTP/1.1\r\nHost: x\r\n\r\n"
DNS_QUERY = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")
add("http-request", lambda r: HTTP_GET, ERROR, NO_REPLY, (4,), echo=False, version=OURS)
add("dns-query", lambda r: DNS_QUERY, ERROR, NO_REPLY, (4,), echo=False, version=OURS)
add("ascii-text-1400", lambda r: b"A" * 1400, ERROR, NO_REPLY, (4,), echo=False, version=OURS)


def malformed_cases() -> list[Case]:
    return [c for c in CASES if not c.control]


# =============================================================================================
# Playing the table against a node
# =============================================================================================

_HANDLE_BANNER = re.compile(r"handle://127\.0\.0\.1:(\d+)")


def handle_port(banner: str) -> int:
    m = _HANDLE_BANNER.search(banner)
    assert m, f"no handle:// address in the banner: {banner!r}"
    return int(m.group(1))


def udp_batch(port: int, items: list[tuple[int, Data]], *, expected_replies: set[int],
              sockets: int = 4, deadline: float = 10.0, quiet: float = 0.3,
              ) -> dict[int, list[Message]]:  # fmt: skip
    """Send every (request id, datagrams) item (round robin over ``sockets`` source ports, so
    both workers get a share); collect replies by request id until every id in
    ``expected_replies`` has one and then ``quiet`` seconds pass with nothing new, or until
    ``deadline``.  Multi-packet replies are reassembled."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sockets)]
    replies: dict[int, list[Message]] = {}
    reassembler = Reassembler()
    try:
        for s_ in socks:
            s_.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s_.bind(("127.0.0.1", 0))
            s_.setblocking(False)
        for i, (_rid, data) in enumerate(items):
            sock = socks[i % sockets]
            for datagram in data if isinstance(data, tuple) else (data,):
                sock.sendto(datagram, ("127.0.0.1", port))
            if i % 16 == 15:
                time.sleep(0.002)  # stay far below the socket buffers
        end = time.monotonic() + deadline
        quiet_until = None
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if quiet_until is None and expected_replies <= set(replies):
                quiet_until = now + quiet
            if quiet_until is not None and now >= quiet_until:
                break
            wait = min(end, quiet_until or end) - now
            ready, _, _ = select.select(socks, [], [], max(0.0, min(wait, 0.1)))
            for sock in ready:
                while True:
                    try:
                        datagram, _addr = sock.recvfrom(65535)
                    except BlockingIOError:
                        break
                    env = Envelope.from_wire(datagram)
                    if env.truncated:
                        whole = reassembler.feed(sock.getsockname(), datagram)
                        if whole is None:
                            continue
                        env, payload = whole
                        m = Message.from_parts(env, payload)
                    else:
                        m = Message.from_wire(datagram)
                    replies.setdefault(m.envelope.request_id, []).append(m)
                    quiet_until = None if not expected_replies <= set(replies) else quiet_until
    finally:
        for s_ in socks:
            s_.close()
    return replies


def tcp_exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[list[Message], bytes, bool]:
    """Send ``data`` on a new connection, half-close, read until the server closes.
    Returns (replies, undecoded trailing bytes, whether the server closed within ``timeout``)."""
    buf = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server hung up before taking everything (an over-long frame)
            pass
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                buf += chunk
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            pass
    out = []
    while len(buf) >= C.ENVELOPE_SIZE:
        n = Envelope.from_wire(buf).length
        if len(buf) < C.ENVELOPE_SIZE + n:
            break
        out.append(Message.from_wire(buf[: C.ENVELOPE_SIZE + n]))
        buf = buf[C.ENVELOPE_SIZE + n :]
    return out, buf, closed


def udp_ask(port: int, data: bytes, timeout: float = 3.0) -> Message:
    """One request, one (possibly multi-packet) reply."""
    reassembler = Reassembler()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for datagram in split(data):
            sock.sendto(datagram, ("127.0.0.1", port))
        while True:
            datagram = sock.recv(65535)
            env = Envelope.from_wire(datagram)
            if not env.truncated:
                return Message.from_wire(datagram)
            whole = reassembler.feed("server", datagram)
            if whole is not None:
                return Message.from_parts(*whole)
