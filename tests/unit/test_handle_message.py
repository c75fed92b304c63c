"""Unit tests of ``resolver.protocols.handle.message``: envelope, header, every body type and
the credential, bytes ↔ objects.

The golden bytes are handle.md §3.5 (request, filtered request, response, RC 100 error,
request digest) and §2.4 (HS_SITE record), produced with the CNRI reference implementation:
each one is decoded, checked field by field, and re-encoded byte for byte.  Every body type
round-trips (``from_wire(to_wire(m)) == m``) with and without a request digest of each hash
code and with a credential, for hand-written and for generated messages.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.errors import Outcome
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.codes import RC_FOR, ResponseCode
from resolver.protocols.handle.message import (
    ChallengeAnswer, ChallengeBody, Envelope, ErrorResponse, HandleBody, HandleProtocolError,
    Header, Message, Opaque, ReferralResponse, RemoveValueRequest, ResolutionRequest,
    ResolutionResponse, SiteInfoResponse, ValuesBody, VerifyRequest, envelope_flags,
)  # fmt: skip
from resolver.values import AdminRecord, HandleValue, Interface, ServerInfo, SiteInfo, encode_value

T2026 = 0x6955B900  # 2026-01-01T00:00:00Z, the vectors' expiration and timestamps
HANDLE = b"88.118.8/SN-2026-0001"

# -- handle.md §3.5 -----------------------------------------------------------------------------
REQUEST_ENV = "020102010000000001020304000000000000003d"
REQUEST_HEADER = "000000010000000019000000ffff00006955b90000000021"
REQUEST_BODY = "0000001538382e3131382e382f534e2d323032362d30303031" "00000000" "00000000"
REQUEST = bytes.fromhex(REQUEST_ENV + REQUEST_HEADER + REQUEST_BODY + "00000000")

FILTERED_ENV = "02010201000000000102030400000000" "0000004c"  # 24 + 48 + 4 = 76
FILTERED_MSG = (
    "000000010000000019000000ffff00006955b900000000300000001538382e3131382e382f534e2d323032362d"
    "30303031000000020000000100000064000000010000000355524c00000000"
)
FILTERED = bytes.fromhex(FILTERED_ENV + FILTERED_MSG)

RESPONSE_ENV = "0201020b000000000102030400000000000000aa"
URL_VALUE_HEX = (
    "000000016955b90000000151800e0000000355524c0000001b68747470733a2f2f6578616d706c652e636f6d2f"
    "736e2f3030303100000000"
)
ADMIN_VALUE_HEX = (
    "000000646955b90000000151800e0000000848535f41444d494e0000001707ff0000000d302e4e412f38382e31"
    "31382e38000000c800000000"
)
RESPONSE_MSG = (
    "000000010000000119000000ffff00006955b9000000008e0000001538382e3131382e382f534e2d323032362d"
    "3030303100000002" + URL_VALUE_HEX + ADMIN_VALUE_HEX + "00000000"
)
RESPONSE = bytes.fromhex(RESPONSE_ENV + RESPONSE_MSG)

# The RC 100 message of §3.5, behind the envelope the reference writes for the request above.
ERROR_100_MSG = "000000010000006419000000ffff00006955b900000000040000000000000000"
ERROR_100 = bytes.fromhex("0201020b00000000010203040000000000000020" + ERROR_100_MSG)

# SHA-256 of the request's header + body (no envelope, no credential), a v2.10 request.
REQUEST_DIGEST = bytes.fromhex("b0be5ee34b61b356843699d7d1a3504503be61ac6291ed0cf9b6336bd7a56204")

# -- handle.md §2.4 -----------------------------------------------------------------------------
SITE_HEX = (
    "0001020b0001800200000000000000010000000464657363000000047465737400000001000000010000000000"
    "000000000000007f0000010000000000000003030100000a51020000000a51030200001f40"
)

URL_VALUE = HandleValue(1, "URL", b"https://example.com/sn/0001", timestamp=T2026)
ADMIN_VALUE = HandleValue(100, "HS_ADMIN", AdminRecord("0.NA/88.118.8", 200, 0x7FF).to_bytes(),
                          timestamp=T2026)  # fmt: skip

DEFAULT_FLAGS = C.FLAG_RECURSIVE | C.FLAG_CACHE_CERTIFY | C.FLAG_PUBLIC_ONLY  # 0x19000000


def framed(m: Message) -> Message:
    """``m`` with the envelope's message length and the header's body length it will have on
    the wire, computed here from the parts (not by ``to_wire``)."""
    body = len(m.body.to_wire())
    if m.digest is not None:
        code, dig = m.digest
        body += (4 if code == C.HASH_MD5_OLD else 1) + len(dig)
    length = C.HEADER_SIZE + body + 4 + len(m.credential)
    return dataclasses.replace(
        m, envelope=dataclasses.replace(m.envelope, length=length),
        header=dataclasses.replace(m.header, body_length=body))  # fmt: skip


def assert_round_trip(m: Message) -> bytes:
    m = framed(m)
    wire = m.to_wire()
    assert len(wire) == C.ENVELOPE_SIZE + m.envelope.length
    back = Message.from_wire(wire)
    assert back == m
    assert back.to_wire() == wire
    return wire


# =============================================================================================
# Golden vectors, decode then re-encode
# =============================================================================================


def test_request_vector_decodes():
    m = Message.from_wire(REQUEST)
    assert m.envelope == Envelope(2, 1, 0x0201, 0, 0x01020304, 0, 0x3D)
    assert m.envelope.suggested == (2, 1)
    assert not (m.envelope.truncated or m.envelope.compressed or m.envelope.encrypted)
    assert m.header == Header(C.OpCode.RESOLUTION, 0, 0x19000000, 0xFFFF, 0, 0, T2026, 0x21)
    assert m.header.has(C.FLAG_RECURSIVE) and m.header.has(C.FLAG_PUBLIC_ONLY)
    assert not m.header.has(C.FLAG_REQUEST_DIGEST)
    assert m.body == ResolutionRequest(HANDLE, (), ())
    assert m.digest is None and m.credential == b""
    assert not m.is_response


def test_request_vector_encodes_byte_for_byte():
    m = Message(Envelope(2, 1, envelope_flags(suggest=(2, 1)), 0, 0x01020304, 0, 0),
                Header(C.OpCode.RESOLUTION, 0, DEFAULT_FLAGS, 0xFFFF, 0, 0, T2026, 0),
                ResolutionRequest(HANDLE))  # fmt: skip
    assert m.to_wire() == REQUEST
    assert Message.from_wire(REQUEST).to_wire() == REQUEST


def test_request_payload_is_header_body_credential():
    m = Message.from_wire(REQUEST)
    assert m.payload() == REQUEST[C.ENVELOPE_SIZE :]
    assert m.payload().endswith(b"\0\0\0\0")  # the credential length is always present
    assert m.header.to_wire() == bytes.fromhex(REQUEST_HEADER)
    assert m.body.to_wire() == bytes.fromhex(REQUEST_BODY)


def test_filtered_request_vector():
    m = Message.from_wire(FILTERED)
    assert m.body == ResolutionRequest(HANDLE, (1, 100), (b"URL",))
    assert m.header.body_length == 0x30
    built = Message(Envelope(2, 1, 0x0201, 0, 0x01020304),
                    Header(1, 0, DEFAULT_FLAGS, 0xFFFF, 0, 0, T2026),
                    ResolutionRequest(HANDLE, (1, 100), (b"URL",)))  # fmt: skip
    assert built.to_wire() == FILTERED
    assert m.to_wire() == FILTERED


def test_response_vector_decodes():
    m = Message.from_wire(RESPONSE)
    assert m.envelope == Envelope(2, 1, 0x020B, 0, 0x01020304, 0, 0xAA)
    assert m.envelope.suggested == (2, 11)
    assert m.header == Header(1, 1, 0x19000000, 0xFFFF, 0, 0, T2026, 0x8E)
    assert m.is_response
    assert isinstance(m.body, ResolutionResponse)
    assert m.body.handle == HANDLE
    assert m.body.values == (URL_VALUE, ADMIN_VALUE)
    assert m.body.values_wire == bytes.fromhex("00000002" + URL_VALUE_HEX + ADMIN_VALUE_HEX)
    assert m.digest is None and m.credential == b""


def test_response_vector_encodes_byte_for_byte():
    built = Message(Envelope(2, 1, envelope_flags(), 0, 0x01020304),
                    Header(1, ResponseCode.SUCCESS, DEFAULT_FLAGS, 0xFFFF, 0, 0, T2026),
                    ResolutionResponse.of(HANDLE, [URL_VALUE, ADMIN_VALUE]))  # fmt: skip
    assert built.to_wire() == RESPONSE
    assert Message.from_wire(RESPONSE).to_wire() == RESPONSE


def test_error_100_vector():
    m = Message.from_wire(ERROR_100)
    assert m.header == Header(1, 100, 0x19000000, 0xFFFF, 0, 0, T2026, 4)
    assert m.body == ErrorResponse(b"")
    built = Message(Envelope(2, 1, envelope_flags(), 0, 0x01020304),
                    Header(1, ResponseCode.HANDLE_NOT_FOUND, DEFAULT_FLAGS, 0xFFFF, 0, 0, T2026),
                    ErrorResponse())  # fmt: skip
    assert built.to_wire() == ERROR_100
    assert built.payload() == bytes.fromhex(ERROR_100_MSG)


def test_digest_vector_in_a_response():
    # The §3.5 digest is SHA-256 of the request's header + body; carried as code 3 + 32 bytes.
    assert hashlib.sha256(REQUEST[C.ENVELOPE_SIZE : -4]).digest() == REQUEST_DIGEST
    m = Message(Envelope(2, 10, envelope_flags(), 0, 0x01020304),
                Header(1, 100, DEFAULT_FLAGS | C.FLAG_REQUEST_DIGEST, 0xFFFF, 0, 0, T2026),
                ErrorResponse(), (C.HASH_SHA256, REQUEST_DIGEST))  # fmt: skip
    wire = m.to_wire()
    body = wire[C.ENVELOPE_SIZE + C.HEADER_SIZE : -4]
    assert body == b"\x03" + REQUEST_DIGEST + b"\0\0\0\0"
    back = Message.from_wire(wire)
    assert back.digest == (C.HASH_SHA256, REQUEST_DIGEST)
    assert back.body == ErrorResponse(b"")


def test_site_vector_inside_a_site_info_response():
    site = bytes.fromhex(SITE_HEX)
    wire = Message(Envelope(2, 11, envelope_flags(), 0, 9),
                   Header(C.OpCode.GET_SITE_INFO, 1, 0, 0xFFFF, 0, 0, T2026),
                   SiteInfoResponse(site)).to_wire()  # fmt: skip
    assert wire[C.ENVELOPE_SIZE + C.HEADER_SIZE : -4] == site
    m = Message.from_wire(wire)
    assert m.body == SiteInfoResponse(site)
    info = SiteInfo.from_bytes(m.body.site)
    assert (info.version, info.protocol_major, info.protocol_minor, info.serial) == (1, 2, 11, 1)
    assert info.primary and not info.multi_primary and info.hash_option == 2
    assert info.attributes == (("desc", "test"),)
    assert info.servers == (ServerInfo(1, ServerInfo.pack_address("127.0.0.1"), b"", (
        Interface(3, 1, 2641), Interface(2, 0, 2641), Interface(3, 2, 8000))),)  # fmt: skip
    assert info.to_bytes().hex() == SITE_HEX
    assert m.to_wire() == wire


# =============================================================================================
# Envelope and header
# =============================================================================================


@pytest.mark.parametrize("flags,actual,expected", [
    (0x0000, (2, 1), (2, 1)),  # RFC 3652 client: no suggestion
    (0x0201, (2, 1), (2, 1)),  # the §3.5 request
    (0x020B, (2, 1), (2, 11)),  # the §3.5 response
    (0x0203, (2, 10), (2, 3)),
    (0x2205, (2, 11), (2, 5)),  # TC does not disturb the suggestion
    (0xE20A, (2, 11), (2, 10)),  # nor do CP and EC
    # Suggested major 0 means "no suggestion": the actual version
    # (reference Encoder.decodeEnvelope).
    (0x0005, (2, 11), (2, 11)),
    (0x0000, (2, 11), (2, 11)),
])  # fmt: skip
def test_envelope_suggested_version(flags, actual, expected):
    assert Envelope(actual[0], actual[1], flags).suggested == expected


@pytest.mark.parametrize("flags,tc,cp,ec", [
    (0x2000, True, False, False), (0x8000, False, True, False), (0x4000, False, False, True),
    (0xE000, True, True, True), (0x1FFF, False, False, False),
])  # fmt: skip
def test_envelope_flag_bits(flags, tc, cp, ec):
    env = Envelope(2, 11, flags)
    assert (env.truncated, env.compressed, env.encrypted) == (tc, cp, ec)


def test_envelope_flags_helper():
    assert envelope_flags() == 0x020B
    assert envelope_flags(truncated=True) == 0x220B
    assert envelope_flags(suggest=(2, 1)) == 0x0201
    assert Envelope().to_wire()[:4] == b"\x02\x0b\x02\x0b"


def test_envelope_wire_layout():
    env = Envelope(2, 10, 0x220B, 0x11223344, 0x55667788, 7, 300)
    wire = env.to_wire()
    assert wire.hex() == "020a220b" "11223344" "55667788" "00000007" "0000012c"
    assert Envelope.from_wire(wire) == env
    assert Envelope.from_wire(wire + b"garbage") == env  # reads its 20 bytes only


@pytest.mark.parametrize("n", range(0, 20))
def test_truncated_envelope(n):
    with pytest.raises(HandleProtocolError):
        Envelope.from_wire(REQUEST[:n])


def test_header_wire_layout():
    hdr = Header(0x01020304, 0x0A0B0C0D, 0x80800000, 0x1234, 7, 9, 0x6955B900, 0x55)
    wire = hdr.to_wire()
    assert wire.hex() == "01020304" "0a0b0c0d" "80800000" "1234" "07" "09" "6955b900" "00000055"
    assert Header.from_wire(wire) == hdr
    assert Header.from_wire(b"xx" + wire, 2) == hdr
    with pytest.raises(HandleProtocolError):
        Header.from_wire(wire[:23])
    with pytest.raises(HandleProtocolError):
        Header.from_wire(wire, 1)


def test_protocol_error_is_malformed_rc_4():
    exc = HandleProtocolError("x")
    assert exc.outcome is Outcome.MALFORMED
    assert RC_FOR[exc.outcome] == ResponseCode.PROTOCOL_ERROR == 4


# =============================================================================================
# Bodies: every op code decodes to its body type; every body type round-trips
# =============================================================================================

REFS = (("88.118.8/ref", 3), ("\u8bbe\u5907/x", -1))
VALUES = (URL_VALUE, ADMIN_VALUE,
          HandleValue(2, "EMAIL", b"q@example.com", ttl=3600, ttl_type=1, timestamp=5,
                      permissions=0x0C, references=REFS))  # fmt: skip
SITE = bytes.fromhex(SITE_HEX)

#: (op code, body) for every request op code; ops without a typed body carry opaque bytes.
REQUESTS = [
    (C.OpCode.RESOLUTION, ResolutionRequest(HANDLE)),
    (C.OpCode.RESOLUTION, ResolutionRequest(HANDLE, (1, 100, -5), (b"URL", b"HS_SITE.", b""))),
    (C.OpCode.GET_SITE_INFO, Opaque()),
    (C.OpCode.GET_SITE_INFO, Opaque(b"\x00\x01extra")),
    (C.OpCode.CREATE_HANDLE, ValuesBody(HANDLE, VALUES)),
    (C.OpCode.CREATE_HANDLE, ValuesBody(HANDLE)),
    (C.OpCode.DELETE_HANDLE, HandleBody(HANDLE)),
    (C.OpCode.ADD_VALUE, ValuesBody(HANDLE, VALUES[:1])),
    (C.OpCode.REMOVE_VALUE, RemoveValueRequest(HANDLE, (1, 2, 300))),
    (C.OpCode.REMOVE_VALUE, RemoveValueRequest(HANDLE)),
    (C.OpCode.MODIFY_VALUE, ValuesBody(HANDLE, VALUES)),
    (C.OpCode.LIST_HANDLES, HandleBody(b"0.NA/88.118.8")),
    (C.OpCode.LIST_NAS, HandleBody(b"0.NA/88.118")),
    (C.OpCode.CHALLENGE_RESPONSE,
     ChallengeAnswer(b"HS_SECKEY", b"88.118.8/ADMIN", 300, b"\x22" * 40)),
    (C.OpCode.VERIFY_RESPONSE,
     VerifyRequest(b"88.118.8/ADMIN", 300, b"n" * 16, b"d" * 32, b"a" * 20)),
    (C.OpCode.HOME_NA, HandleBody(b"0.NA/88.118.9")),
    (C.OpCode.UNHOME_NA, HandleBody(b"0.NA/88.118.9")),
    (C.OpCode.LIST_HOMED_NAS, Opaque()),
    (C.OpCode.SESSION_SETUP, Opaque(b"\x00\x01" + b"k" * 30)),
    (C.OpCode.SESSION_TERMINATE, Opaque()),
    (C.OpCode.SESSION_EXCHANGEKEY, Opaque(b"\x00\x00\x00\x04abcd")),
    (C.OpCode.GET_NEXT_TXN_ID, Opaque()),
    (C.OpCode.RETRIEVE_TXN_LOG, Opaque(b"\x00" + bytes(8) + bytes(8) + b"\x02" + bytes(8))),
    (C.OpCode.DUMP_HANDLES, Opaque(b"\x00\x00\x00\x01\x00\x00\x00\x00")),
    (C.OpCode.BACKUP_SERVER, Opaque()),
    (C.OpCode.LOGIN_ID_SYSTEM, Opaque(b"idis login")),
    (C.OpCode.RESERVED, Opaque(b"?")),
    (77, Opaque(b"unknown op code")),
    (0xFFFFFFFF, Opaque()),
]

#: (op code, response code, body) for every response body type.
RESPONSES = [
    (C.OpCode.RESOLUTION, 1, ResolutionResponse.of(HANDLE, VALUES)),
    (C.OpCode.RESOLUTION, 1, ResolutionResponse.of(HANDLE, ())),
    (C.OpCode.GET_SITE_INFO, 1, SiteInfoResponse(SITE)),
    (C.OpCode.CREATE_HANDLE, 1, Opaque()),
    (C.OpCode.CREATE_HANDLE, 1, Opaque(b"\x00\x00\x00\x0588.1/x")),  # HNv9 minted handle
    (C.OpCode.LIST_HOMED_NAS, 1, Opaque(b"\x00\x00\x00\x00")),
    (C.OpCode.RESOLUTION, 100, ErrorResponse()),
    (C.OpCode.RESOLUTION, 200, ErrorResponse()),
    (C.OpCode.RESOLUTION, 301, ErrorResponse(b"That prefix doesn't live here")),
    (C.OpCode.CREATE_HANDLE, 4, ErrorResponse("\u534f\u8bae".encode())),
    (C.OpCode.RESOLUTION, 302, ReferralResponse(b"0.NA/88")),
    (C.OpCode.RESOLUTION, 303,
     ReferralResponse(b"", ResolutionResponse.of(b"", VALUES).values_wire)),
    (C.OpCode.RESOLUTION, 303, ReferralResponse(b"0.NA/88.118", b"\0\0\0\0")),
    (C.OpCode.CREATE_HANDLE, 402, ChallengeBody(b"\x01" * 16)),
]

DIGESTS = [
    None,
    (C.HASH_MD5_OLD, hashlib.md5(b"req").digest()),
    (C.HASH_MD5, hashlib.md5(b"req").digest()),
    (C.HASH_SHA1, hashlib.sha1(b"req").digest()),
    (C.HASH_SHA256, hashlib.sha256(b"req").digest()),
]
CREDENTIALS = [b"", b"\x00\x00\x00\x00\x00\x00\x00\x0c88.118.8/ADM\x00\x00\x01\x2c" + b"s" * 40]


def _request(opcode, body, credential=b"") -> Message:
    return Message(Envelope(2, 11, envelope_flags(), 0x01, 0x7FFFFFFF),
                   Header(opcode, 0, DEFAULT_FLAGS, 0xFFFF, 1, 0, T2026), body,
                   credential=credential)  # fmt: skip


def _response(opcode, rc, body, digest=None, credential=b"") -> Message:
    flags = DEFAULT_FLAGS | (C.FLAG_REQUEST_DIGEST if digest is not None else 0)
    return Message(Envelope(2, 10, envelope_flags(), 0x0A0B0C0D, 0x01020304),
                   Header(opcode, rc, flags, 3, 2, 0, T2026), body, digest, credential)  # fmt: skip


def _id(x):
    if isinstance(x, tuple):
        return "-".join(str(int(v)) if isinstance(v, int) else type(v).__name__ for v in x)
    return None


@pytest.mark.parametrize("credential", CREDENTIALS, ids=["unsigned", "credential"])
@pytest.mark.parametrize("case", REQUESTS, ids=_id)
def test_request_round_trip(case, credential):
    opcode, body = case
    wire = assert_round_trip(_request(opcode, body, credential))
    back = Message.from_wire(wire)
    assert type(back.body) is type(body)
    assert back.credential == credential


@pytest.mark.parametrize("credential", CREDENTIALS, ids=["unsigned", "credential"])
@pytest.mark.parametrize("digest", DIGESTS, ids=["no-digest", "md5-old", "md5", "sha1", "sha256"])
@pytest.mark.parametrize("case", RESPONSES, ids=_id)
def test_response_round_trip(case, digest, credential):
    opcode, rc, body = case
    wire = assert_round_trip(_response(opcode, rc, body, digest, credential))
    back = Message.from_wire(wire)
    assert type(back.body) is type(body)
    assert back.digest == digest


@pytest.mark.parametrize("code,size", [(C.HASH_MD5, 16), (C.HASH_SHA1, 20), (C.HASH_SHA256, 32)])
def test_digest_wire_format(code, size):
    dig = bytes(range(size))
    wire = _response(1, 100, ErrorResponse(), (code, dig)).to_wire()
    body = wire[C.ENVELOPE_SIZE + C.HEADER_SIZE : -4]
    assert body == bytes((code,)) + dig + b"\0\0\0\0"


def test_md5_old_digest_wire_format():
    dig = hashlib.md5(b"old").digest()
    wire = _response(1, 100, ErrorResponse(), (C.HASH_MD5_OLD, dig)).to_wire()
    body = wire[C.ENVELOPE_SIZE + C.HEADER_SIZE : -4]
    assert body == b"\0\0\0\x10" + dig + b"\0\0\0\0"


def test_digest_is_read_only_in_responses_with_rd():
    # A request with RD set carries no digest: its body starts with the handle.
    req = _request(1, ResolutionRequest(b"\x03" * 5))
    req = dataclasses.replace(req, header=dataclasses.replace(
        req.header, opflags=req.header.opflags | C.FLAG_REQUEST_DIGEST))  # fmt: skip
    assert Message.from_wire(req.to_wire()).body == ResolutionRequest(b"\x03" * 5)
    # A response without RD has no digest either, even when the body starts like one.
    resp = _response(1, 100, ErrorResponse(b"\x03" * 40))
    assert Message.from_wire(resp.to_wire()).digest is None


@pytest.mark.parametrize("code", [4, 5, 0x80, 0xFF])
def test_unknown_digest_code_is_a_protocol_error(code):
    wire = bytearray(_response(1, 100, ErrorResponse(), (C.HASH_SHA1, bytes(20))).to_wire())
    wire[C.ENVELOPE_SIZE + C.HEADER_SIZE] = code
    with pytest.raises(HandleProtocolError):
        Message.from_wire(bytes(wire))


@pytest.mark.parametrize("opcode,body_type", [
    (C.OpCode.RESOLUTION, ResolutionRequest), (C.OpCode.GET_SITE_INFO, Opaque),
    (C.OpCode.CREATE_HANDLE, ValuesBody), (C.OpCode.DELETE_HANDLE, HandleBody),
    (C.OpCode.ADD_VALUE, ValuesBody), (C.OpCode.REMOVE_VALUE, RemoveValueRequest),
    (C.OpCode.MODIFY_VALUE, ValuesBody), (C.OpCode.LIST_HANDLES, HandleBody),
    (C.OpCode.LIST_NAS, HandleBody), (C.OpCode.CHALLENGE_RESPONSE, ChallengeAnswer),
    (C.OpCode.VERIFY_RESPONSE, VerifyRequest), (C.OpCode.HOME_NA, HandleBody),
    (C.OpCode.UNHOME_NA, HandleBody), (C.OpCode.LIST_HOMED_NAS, Opaque),
    (C.OpCode.SESSION_SETUP, Opaque), (C.OpCode.SESSION_TERMINATE, Opaque),
    (C.OpCode.SESSION_EXCHANGEKEY, Opaque), (C.OpCode.GET_NEXT_TXN_ID, Opaque),
    (C.OpCode.RETRIEVE_TXN_LOG, Opaque), (C.OpCode.DUMP_HANDLES, Opaque),
    (C.OpCode.BACKUP_SERVER, Opaque), (C.OpCode.LOGIN_ID_SYSTEM, Opaque),
    (C.OpCode.RESERVED, Opaque),
])  # fmt: skip
def test_every_op_code_decodes_to_its_body_type(opcode, body_type):
    body = next(b for op, b in REQUESTS if op == opcode)
    assert type(body) is body_type
    assert type(Message.from_wire(_request(opcode, body).to_wire()).body) is body_type


def test_every_op_code_has_a_request_case():
    assert {int(op) for op in C.OpCode} <= {int(op) for op, _ in REQUESTS}


def test_resolution_response_of_and_values():
    body = ResolutionResponse.of(HANDLE, VALUES)
    assert body.values == VALUES
    assert body.values_wire[:4] == b"\0\0\0\x03"
    assert body.values_wire[4:] == b"".join(encode_value(v) for v in VALUES)
    assert ResolutionResponse(HANDLE).values == ()


# =============================================================================================
# Structural errors: the credential length, the body length, the 256 KiB limit
# =============================================================================================


def test_missing_credential_length_is_an_error():
    # RFC 3652 leaves the credential optional; HNv9 always writes its int4 length.
    short = REQUEST[:-4]
    short = short[:16] + (len(short) - 20).to_bytes(4, "big") + short[20:]
    with pytest.raises(HandleProtocolError):
        Message.from_wire(short)


@pytest.mark.parametrize("delta", [-1, 1, 20, -20])
def test_envelope_length_must_match_the_data(delta):
    data = REQUEST[:16] + (len(REQUEST) - 20 + delta).to_bytes(4, "big") + REQUEST[20:]
    with pytest.raises(HandleProtocolError):
        Message.from_wire(data)


@pytest.mark.parametrize("body_length", [0, 0x20, 0x22, 0x25, 0x7FFFFFFF, 0xFFFFFFFF])
def test_body_length_must_fit(body_length):
    data = bytearray(REQUEST)
    data[40:44] = body_length.to_bytes(4, "big")
    with pytest.raises(HandleProtocolError):
        Message.from_wire(bytes(data))


def test_message_over_256_kib_is_refused():
    payload = _request(C.OpCode.SESSION_SETUP, Opaque(bytes(C.MAX_MESSAGE))).payload()
    assert len(payload) > C.MAX_MESSAGE
    with pytest.raises(HandleProtocolError) as info:
        Message.from_parts(Envelope(length=len(payload)), payload)
    assert RC_FOR[info.value.outcome] == 4


def test_message_of_exactly_256_kib_is_accepted():
    filler = C.MAX_MESSAGE - C.HEADER_SIZE - 4
    payload = _request(C.OpCode.SESSION_SETUP, Opaque(bytes(filler))).payload()
    assert len(payload) == C.MAX_MESSAGE
    m = Message.from_parts(Envelope(length=len(payload)), payload)
    assert m.body == Opaque(bytes(filler))


def test_from_parts_equals_from_wire():
    env = Envelope.from_wire(REQUEST)
    assert Message.from_parts(env, REQUEST[20:]) == Message.from_wire(REQUEST)


def test_from_wire_accepts_bytearray_and_memoryview():
    m = Message.from_wire(REQUEST)
    assert Message.from_wire(bytearray(REQUEST)) == m
    assert Message.from_wire(memoryview(REQUEST)) == m


# =============================================================================================
# Generated messages
# =============================================================================================

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i32 = st.integers(-(2**31), 2**31 - 1)
small_bytes = st.binary(max_size=64)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)

references = st.lists(st.tuples(texts, i32), max_size=2).map(tuple)
values_st = st.builds(HandleValue, index=i32, type=texts, data=small_bytes, ttl=i32, ttl_type=u8,
                      timestamp=i32, permissions=u8, references=references)  # fmt: skip
value_lists = st.lists(values_st, max_size=4).map(tuple)
int_lists = st.lists(i32, max_size=6).map(tuple)
envelopes = st.builds(Envelope, major=u8, minor=u8, flags=u16, session_id=u32, request_id=u32,
                      sequence=u32, length=st.just(0))  # fmt: skip
digests = st.one_of(
    st.none(),
    st.binary(min_size=16, max_size=16).map(lambda d: (C.HASH_MD5_OLD, d)),
    st.binary(min_size=16, max_size=16).map(lambda d: (C.HASH_MD5, d)),
    st.binary(min_size=20, max_size=20).map(lambda d: (C.HASH_SHA1, d)),
    st.binary(min_size=32, max_size=32).map(lambda d: (C.HASH_SHA256, d)),
)

_TYPED_OPS = {
    C.OpCode.RESOLUTION: st.builds(ResolutionRequest, small_bytes, int_lists,
                                   st.lists(small_bytes, max_size=4).map(tuple)),
    C.OpCode.CREATE_HANDLE: st.builds(ValuesBody, small_bytes, value_lists),
    C.OpCode.DELETE_HANDLE: st.builds(HandleBody, small_bytes),
    C.OpCode.ADD_VALUE: st.builds(ValuesBody, small_bytes, value_lists),
    C.OpCode.REMOVE_VALUE: st.builds(RemoveValueRequest, small_bytes, int_lists),
    C.OpCode.MODIFY_VALUE: st.builds(ValuesBody, small_bytes, value_lists),
    C.OpCode.LIST_HANDLES: st.builds(HandleBody, small_bytes),
    C.OpCode.LIST_NAS: st.builds(HandleBody, small_bytes),
    C.OpCode.CHALLENGE_RESPONSE: st.builds(ChallengeAnswer, small_bytes, small_bytes, i32,
                                           small_bytes),
    C.OpCode.VERIFY_RESPONSE: st.builds(VerifyRequest, small_bytes, i32, small_bytes, small_bytes,
                                        small_bytes),
    C.OpCode.HOME_NA: st.builds(HandleBody, small_bytes),
    C.OpCode.UNHOME_NA: st.builds(HandleBody, small_bytes),
}  # fmt: skip
_opaque_ops = u32.filter(lambda op: op not in _TYPED_OPS)


@st.composite
def requests(draw) -> Message:
    if draw(st.booleans()):
        opcode = draw(st.sampled_from(sorted(_TYPED_OPS)))
        body = draw(_TYPED_OPS[opcode])
    else:
        opcode, body = draw(_opaque_ops), Opaque(draw(small_bytes))
    header = Header(opcode, 0, draw(u32), draw(u16), draw(u8), draw(u8), draw(u32))
    return Message(draw(envelopes), header, body, None, draw(small_bytes))


@st.composite
def responses(draw) -> Message:
    opcode = draw(st.one_of(st.sampled_from([1, 2, 100, 302]), u32))
    rc = draw(st.one_of(st.sampled_from([1, 2, 4, 100, 200, 301, 302, 303, 402]), u32.filter(bool)))
    if rc == 1 and opcode == C.OpCode.RESOLUTION:
        body = ResolutionResponse.of(draw(small_bytes), draw(value_lists))
    elif rc == 1 and opcode == C.OpCode.GET_SITE_INFO:
        body = SiteInfoResponse(draw(small_bytes))
    elif rc == 1:
        body = Opaque(draw(small_bytes))
    elif rc in (302, 303):
        values = draw(st.one_of(st.none(), value_lists))
        wire = b"" if values is None else ResolutionResponse.of(b"", values).values_wire
        body = ReferralResponse(draw(small_bytes), wire)
    elif rc == 402:
        body = ChallengeBody(draw(small_bytes))
    else:
        body = ErrorResponse(draw(small_bytes))
    digest = draw(digests)
    flags = draw(u32) & ~C.FLAG_REQUEST_DIGEST
    if digest is not None:
        flags |= C.FLAG_REQUEST_DIGEST
    header = Header(opcode, rc, flags, draw(u16), draw(u8), draw(u8), draw(u32))
    return Message(draw(envelopes), header, body, digest, draw(small_bytes))


@settings(max_examples=300, deadline=None)
@given(requests())
def test_generated_requests_round_trip(m):
    assert_round_trip(m)


@settings(max_examples=300, deadline=None)
@given(responses())
def test_generated_responses_round_trip(m):
    assert_round_trip(m)
