"""Unit tests of ``resolver.protocols.handle.codec`` (version negotiation, request digests,
replies and error replies) and of the protocol numbers in ``constants`` and ``codes``.

The replies to the handle.md §3.5 request must be the §3.5 response and RC 100 error byte for
byte; the op codes and response codes must carry the numbers of handle.md §3.3 and §3.4.
"""

from __future__ import annotations

import hashlib

import golden
import pytest

from resolver.protocols.handle import codec
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.codes import ResponseCode
from resolver.protocols.handle.message import (
    ChallengeBody, Envelope, ErrorResponse, Header, Message, ReferralResponse, ResolutionRequest,
    ResolutionResponse, SiteInfoResponse, envelope_flags,
)  # fmt: skip
from resolver.values import AdminRecord, HandleValue

T2026 = 0x6955B900
HANDLE = b"88.118.8/SN-2026-0001"

# handle.md §3.5 (see tests/unit/test_handle_message.py for the field-by-field decoding).
REQUEST = golden.REQUEST
RESPONSE = golden.RESPONSE
ERROR_100 = bytes.fromhex(
    "0201020b00000000010203040000000000000020"
    "000000010000006419000000ffff00006955b900000000040000000000000000"
)
REQUEST_DIGEST = bytes.fromhex("b0be5ee34b61b356843699d7d1a3504503be61ac6291ed0cf9b6336bd7a56204")

URL_VALUE = HandleValue(1, "URL", b"https://example.com/sn/0001", timestamp=T2026)
ADMIN_VALUE = HandleValue(100, "HS_ADMIN", AdminRecord("0.NA/88.118.8", 200, 0x7FF).to_bytes(),
                          timestamp=T2026)  # fmt: skip


def _split(wire: bytes) -> tuple[Envelope, bytes, Header]:
    env = Envelope.from_wire(wire)
    payload = wire[C.ENVELOPE_SIZE :]
    return env, payload, Header.from_wire(payload)


def _request(env: Envelope, opflags: int = 0x19000000, credential: bytes = b"",
             body=ResolutionRequest(HANDLE)) -> bytes:  # fmt: skip
    return Message(env, Header(1, 0, opflags, 0xFFFF, 3, 0, T2026), body,
                   credential=credential).to_wire()  # fmt: skip


# =============================================================================================
# Golden replies
# =============================================================================================


def test_reply_to_the_vector_request_is_the_vector_response():
    env, payload, header = _split(REQUEST)
    out = codec.respond(env, payload, header, ResponseCode.SUCCESS,
                        ResolutionResponse.of(HANDLE, [URL_VALUE, ADMIN_VALUE]))  # fmt: skip
    assert out == RESPONSE


def test_error_to_the_vector_request_is_the_vector_error():
    env, payload, header = _split(REQUEST)
    assert codec.error(env, payload, header, ResponseCode.HANDLE_NOT_FOUND) == ERROR_100


def test_digest_vector():
    # handle.md §3.5: the digest of the request's header + body for a v2.10 request.
    header_and_body = REQUEST[C.ENVELOPE_SIZE : -4]
    assert codec.digest_of((2, 10), header_and_body) == (C.HASH_SHA256, REQUEST_DIGEST)


# =============================================================================================
# Version negotiation
# =============================================================================================


def _versions(table):
    return [pytest.param(a, f, r, id=f"{a[0]}.{a[1]}-flags{f:04x}") for a, f, r in table]


@pytest.mark.parametrize("actual,flags,reply", _versions([
    ((2, 1), 0x0201, (2, 1)),  # the §3.5 request: 2.1 suggesting 2.1
    ((2, 1), 0x0000, (2, 1)),  # RFC 3652 client, no suggestion: its own version
    ((2, 1), 0x020B, (2, 11)),  # speaks 2.1, suggests 2.11
    ((2, 3), 0x020A, (2, 10)),
    ((2, 10), 0x020A, (2, 10)),
    ((2, 11), 0x020B, (2, 11)),
    ((2, 11), 0x0205, (2, 5)),
    ((2, 5), 0x0000, (2, 5)),
    ((2, 11), 0x020C, (2, 11)),  # newer than ours: ours
    ((2, 11), 0x02FF, (2, 11)),
    ((2, 11), 0x0309, (2, 11)),  # suggests 3.9: ours
    ((2, 12), 0x0000, (2, 11)),  # speaks a newer 2.x without a suggestion: ours
    ((2, 0), 0x0000, (2, 0)),
    ((2, 11), 0x220B, (2, 11)),  # TC set
    # Suggested major 0 is "no suggestion" (reference Encoder.decodeEnvelope): the actual version.
    ((2, 11), 0x0005, (2, 11)),
    ((2, 7), 0x0001, (2, 7)),
]))  # fmt: skip
def test_negotiate(actual, flags, reply):
    assert codec.negotiate(Envelope(actual[0], actual[1], flags)) == reply


@pytest.mark.parametrize("actual,flags,reply", _versions([
    ((2, 1), 0x0201, (2, 1)), ((2, 1), 0x020B, (2, 11)), ((2, 11), 0x0207, (2, 7)),
    ((2, 11), 0x0005, (2, 11)),
]))  # fmt: skip
def test_reply_is_written_at_the_negotiated_version_suggesting_ours(actual, flags, reply):
    env, payload, header = _split(_request(Envelope(actual[0], actual[1], flags, 5, 6)))
    out = codec.error(env, payload, header, 100)
    assert (out[0], out[1]) == reply
    assert out[2:4] == b"\x02\x0b"  # our suggested version, 2.11, no flags


# =============================================================================================
# Request digests
# =============================================================================================


@pytest.mark.parametrize("version,code,algo", [
    ((1, 0), C.HASH_MD5_OLD, hashlib.md5), ((2, 0), C.HASH_MD5_OLD, hashlib.md5),
    ((2, 1), C.HASH_SHA1, hashlib.sha1), ((2, 5), C.HASH_SHA1, hashlib.sha1),
    ((2, 6), C.HASH_SHA1, hashlib.sha1), ((2, 7), C.HASH_SHA256, hashlib.sha256),
    ((2, 10), C.HASH_SHA256, hashlib.sha256), ((2, 11), C.HASH_SHA256, hashlib.sha256),
])  # fmt: skip
def test_digest_of_per_version(version, code, algo):
    data = b"header and body"
    assert codec.digest_of(version, data) == (code, algo(data).digest())


@pytest.mark.parametrize("flags,code,size", [
    (0x0000, C.HASH_SHA256, 32),  # no suggestion: actual 2.11
    (0x0201, C.HASH_SHA1, 20), (0x0206, C.HASH_SHA1, 20),
    (0x0207, C.HASH_SHA256, 32), (0x020B, C.HASH_SHA256, 32),
])  # fmt: skip
def test_reply_with_rd_carries_the_digest_of_the_request(flags, code, size):
    credential = b"\x00\x00\x00\x07ignored"
    wire = _request(Envelope(2, 11, flags, 1, 2), opflags=0x19000000 | C.FLAG_REQUEST_DIGEST,
                    credential=credential)  # fmt: skip
    env, payload, header = _split(wire)
    out = Message.from_wire(codec.error(env, payload, header, 100, "miss"))
    covered = payload[: C.HEADER_SIZE + header.body_length]  # header + body, no credential
    assert payload == covered + b"\0\0\0\x0b" + credential
    algo = {C.HASH_SHA1: hashlib.sha1, C.HASH_SHA256: hashlib.sha256}[code]
    assert out.digest == (code, algo(covered).digest())
    assert len(out.digest[1]) == size
    assert out.header.has(C.FLAG_REQUEST_DIGEST)
    assert out.body == ErrorResponse(b"miss")


def test_reply_below_2_1_uses_the_old_md5_format():
    wire = _request(Envelope(2, 0, 0, 1, 2), opflags=C.FLAG_REQUEST_DIGEST)
    env, payload, header = _split(wire)
    out = codec.error(env, payload, header, 100)
    assert out[:2] == b"\x02\x00"
    body = out[C.ENVELOPE_SIZE + C.HEADER_SIZE : -4]
    assert body == b"\0\0\0\x10" + hashlib.md5(payload[:-4]).digest() + b"\0\0\0\0"
    assert Message.from_wire(out).digest == (C.HASH_MD5_OLD, hashlib.md5(payload[:-4]).digest())


def test_no_digest_without_rd():
    env, payload, header = _split(_request(Envelope(2, 11, envelope_flags(), 1, 2)))
    out = Message.from_wire(codec.error(env, payload, header, 100))
    assert out.digest is None
    assert out.payload()[C.HEADER_SIZE :] == b"\0\0\0\0" + b"\0\0\0\0"


def test_explicit_version_overrides_negotiation():
    wire = _request(Envelope(3, 0, 0, 1, 2), opflags=C.FLAG_REQUEST_DIGEST)
    env, payload, header = _split(wire)
    out = codec.error(env, payload, header, 4, "bad version", version=(2, 11))
    m = Message.from_wire(out)
    assert (m.envelope.major, m.envelope.minor) == (2, 11)
    assert m.digest == (C.HASH_SHA256, hashlib.sha256(payload[:-4]).digest())


# =============================================================================================
# What a reply copies from its request
# =============================================================================================


@pytest.mark.parametrize("opcode,rc,body", [
    (1, 1, ResolutionResponse.of(HANDLE, [URL_VALUE])),
    (2, 1, SiteInfoResponse(b"\x00\x01site")),
    (1, 100, ErrorResponse()),
    (1, 303, ReferralResponse(b"0.NA/88")),
    (100, 402, ChallengeBody(b"n" * 16)),
])  # fmt: skip
def test_reply_envelope_and_header(opcode, rc, body):
    req_env = Envelope(2, 9, envelope_flags(truncated=True, suggest=(2, 10)), 0x0BADCAFE,
                       0x7EEDBEEF, 3, 0)  # fmt: skip
    req_header = Header(opcode, 0, 0x9B000000, 0x1234, 5, 0, 0x6955B9FF)
    wire = Message(req_env, req_header, ResolutionRequest(HANDLE)).to_wire()
    env, payload, header = _split(wire)
    m = Message.from_wire(codec.respond(env, payload, header, rc, body))
    assert m.envelope.request_id == 0x7EEDBEEF
    assert m.envelope.session_id == 0x0BADCAFE
    assert (m.envelope.major, m.envelope.minor) == (2, 10)
    assert m.envelope.flags == 0x020B  # no TC (the unsplit reply), ours suggested
    assert m.envelope.sequence == 0
    assert m.envelope.length == len(m.to_wire()) - C.ENVELOPE_SIZE
    assert m.header.opcode == opcode and m.header.rc == rc
    assert m.header.opflags == 0x9B000000
    assert m.header.site_serial == 0x1234
    assert (m.header.recursion, m.header.expiration) == (5, 0x6955B9FF)
    assert m.body == body
    assert m.credential == b""


def test_error_message_is_utf8():
    env, payload, header = _split(REQUEST)
    out = Message.from_wire(codec.error(env, payload, header, 102, "标识 invalid"))
    assert out.body == ErrorResponse("标识 invalid".encode())
    assert out.header.rc == 102


# =============================================================================================
# Protocol numbers: handle.md §3.3 and §3.4
# =============================================================================================

#: handle.md §3.3: op code → our name (HNv9 name where RFC and HNv9 differ).
OP_CODES = {
    0: "RESERVED", 1: "RESOLUTION", 2: "GET_SITE_INFO", 100: "CREATE_HANDLE",
    101: "DELETE_HANDLE", 102: "ADD_VALUE", 103: "REMOVE_VALUE", 104: "MODIFY_VALUE",
    105: "LIST_HANDLES", 106: "LIST_NAS", 200: "CHALLENGE_RESPONSE", 201: "VERIFY_RESPONSE",
    300: "HOME_NA", 301: "UNHOME_NA", 302: "LIST_HOMED_NAS", 400: "SESSION_SETUP",
    401: "SESSION_TERMINATE", 402: "SESSION_EXCHANGEKEY", 1000: "GET_NEXT_TXN_ID",
    1001: "RETRIEVE_TXN_LOG", 1002: "DUMP_HANDLES", 1003: "BACKUP_SERVER", 2001: "LOGIN_ID_SYSTEM",
}  # fmt: skip

#: handle.md §3.4: every response code a CNRI server (RFC 3652 + HNv9) can send.  The
#: unused 900-902 and the IDIS-SDK-only 601-605 are left out.
RESPONSE_CODES = {
    1: "SUCCESS", 2: "ERROR", 3: "SERVER_TOO_BUSY", 4: "PROTOCOL_ERROR",
    5: "OPERATION_NOT_SUPPORTED", 6: "RECURSION_COUNT_TOO_HIGH", 7: "SERVER_BACKUP",
    100: "HANDLE_NOT_FOUND", 101: "HANDLE_ALREADY_EXISTS", 102: "INVALID_HANDLE",
    200: "VALUES_NOT_FOUND", 201: "VALUE_ALREADY_EXISTS", 202: "INVALID_VALUE",
    300: "OUT_OF_DATE_SITE_INFO", 301: "SERVER_NOT_RESP", 302: "SERVICE_REFERRAL",
    303: "PREFIX_REFERRAL", 400: "INVALID_ADMIN", 401: "INSUFFICIENT_PERMISSIONS",
    402: "AUTHENTICATION_NEEDED", 403: "AUTHENTICATION_FAILED", 404: "INVALID_CREDENTIAL",
    405: "AUTHEN_TIMEOUT", 406: "AUTHEN_ERROR", 500: "SESSION_TIMEOUT", 501: "SESSION_FAILED",
    502: "INVALID_SESSION_KEY", 503: "NEED_RSAKEY_FOR_SESSIONEXCHANGE",
    504: "INVALID_SESSIONSETUP_REQUEST", 505: "SESSION_MESSAGE_REJECTED",
}  # fmt: skip


def test_op_codes_are_the_table():
    assert {int(op): op.name for op in C.OpCode} == OP_CODES


@pytest.mark.parametrize("code", sorted(RESPONSE_CODES))
def test_response_code_table_is_complete(code):
    assert code in {int(rc) for rc in ResponseCode}, f"RC {code} ({RESPONSE_CODES[code]}) missing"


@pytest.mark.parametrize("rc", list(ResponseCode), ids=lambda rc: rc.name)
def test_response_code_values(rc):
    assert RESPONSE_CODES.get(int(rc)) == rc.name


@pytest.mark.parametrize("name,value", [
    ("FLAG_AUTHORITATIVE", 0x80000000), ("FLAG_CERTIFY", 0x40000000),
    ("FLAG_ENCRYPT", 0x20000000), ("FLAG_RECURSIVE", 0x10000000),
    ("FLAG_CACHE_CERTIFY", 0x08000000), ("FLAG_CONTINUOUS", 0x04000000),
    ("FLAG_KEEP_ALIVE", 0x02000000), ("FLAG_PUBLIC_ONLY", 0x01000000),
    ("FLAG_REQUEST_DIGEST", 0x00800000), ("FLAG_OVERWRITE", 0x00400000),
    ("FLAG_MINT", 0x00200000), ("FLAG_DO_NOT_REFER", 0x00100000),
    ("ENV_COMPRESSED", 0x8000), ("ENV_ENCRYPTED", 0x4000), ("ENV_TRUNCATED", 0x2000),
    ("OUR_MAJOR", 2), ("OUR_MINOR", 11), ("ENVELOPE_SIZE", 20), ("HEADER_SIZE", 24),
    ("MAX_MESSAGE", 262144), ("UDP_PACKET", 512), ("UDP_PAYLOAD", 492),
    ("HASH_MD5_OLD", 0), ("HASH_MD5", 1), ("HASH_SHA1", 2), ("HASH_SHA256", 3),
])  # fmt: skip
def test_protocol_constants(name, value):
    assert getattr(C, name) == value
