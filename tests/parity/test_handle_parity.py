"""Parity of the Handle fast path: pure twin, Cython twin and the general path, byte for byte.

For every request below the two ``handle_resolve`` twins must return the same thing (both None
or equal bytes), and whenever they return bytes these must be the reply the general path —
``Envelope.from_wire`` then ``HandleFrontEnd.answer``, as the UDP and TCP drivers call it —
produces.  Each case also states what it must get (a hit with given value indexes, RC 100, RC
200, declined with a given general-path answer, or no reply at all), so parity cannot hold
vacuously.  The golden vectors of handle.md §3.5 pin the bytes of all three.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import native
import vectors
from native import _hotpath_py as python_twin
from resolver.config import Config
from resolver.core.authority import AuthorityHandler
from resolver.core.engine import Resolver
from resolver.errors import InvalidIdentifier
from resolver.identifier import Identifier
from resolver.protocols.handle import codec
from resolver.protocols.handle import constants as HC
from resolver.protocols.handle.codes import ResponseCode as RC
from resolver.protocols.handle.message import (
    DIGEST_SIZES, Envelope, Header, Message, ResolutionResponse,
)  # fmt: skip
from resolver.record import Record, pack
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.store import Change
from resolver.store.lmdb_store import LmdbStore
from resolver.values import Reader, encode_value, read_value

H = bytes.fromhex

# -- handle.md §3.5 golden vectors ------------------------------------------------------------
GOLDEN_HANDLE = b"88.118.8/SN-2026-0001"
GOLDEN_REQUEST = H(
    "020102010000000001020304000000000000003d"  # envelope
    "000000010000000019000000ffff00006955b90000000021"  # header
    "0000001538382e3131382e382f534e2d323032362d30303031"  # handle
    "00000000" "00000000"  # no indexes, no types
    "00000000"  # credential length
)  # fmt: skip
GOLDEN_FILTERED_REQUEST = H(
    "020102010000000001020304000000000000004c"
    "000000010000000019000000ffff00006955b90000000030"
    "0000001538382e3131382e382f534e2d323032362d30303031"
    "000000020000000100000064"  # indexes [1, 100]
    "000000010000000355524c"  # types [URL]
    "00000000"
)  # fmt: skip
GOLDEN_URL_VALUE = H("000000016955b90000000151800e0000000355524c0000001b68747470733a2f2f6578616d"
                     "706c652e636f6d2f736e2f3030303100000000")  # fmt: skip
GOLDEN_ADMIN_VALUE = H("000000646955b90000000151800e0000000848535f41444d494e0000001707ff0000000d30"
                       "2e4e412f38382e3131382e38000000c800000000")  # fmt: skip
GOLDEN_RESPONSE = (
    H("0201020b000000000102030400000000000000aa")
    + H("000000010000000119000000ffff00006955b9000000008e"
        "0000001538382e3131382e382f534e2d323032362d3030303100000002")
    + GOLDEN_URL_VALUE + GOLDEN_ADMIN_VALUE + H("00000000")
)  # fmt: skip
#: RC 100 reply message: header, empty error message, credential length.
GOLDEN_RC100_MESSAGE = H("000000010000006419000000ffff00006955b900000000040000000000000000")
#: SHA-256 of the golden request's header + body (the v2.10 digest vector).
GOLDEN_SHA256 = H("b0be5ee34b61b356843699d7d1a3504503be61ac6291ed0cf9b6336bd7a56204")
GOLDEN_TIMESTAMP = 0x6955B900

DEFAULT_FLAGS = HC.FLAG_RECURSIVE | HC.FLAG_CACHE_CERTIFY | HC.FLAG_PUBLIC_ONLY  # 0x19000000
RD = HC.FLAG_REQUEST_DIGEST


# -- building requests ------------------------------------------------------------------------
def _s(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


def resolution_body(handle: bytes, indexes=(), types=()) -> bytes:
    return (_s(handle) + struct.pack(">i", len(indexes))
            + b"".join(struct.pack(">i", i) for i in indexes)
            + struct.pack(">i", len(types)) + b"".join(_s(t) for t in types))  # fmt: skip


def request(handle: bytes = GOLDEN_HANDLE, indexes=(), types=(), *, flags: int = DEFAULT_FLAGS,
            version=(2, 1), suggest=(2, 1), env_bits: int = 0, session: int = 0,
            request_id: int = 0x01020304, sequence: int = 0, opcode: int = 1, rc: int = 0,
            site_serial: int = 0xFFFF, recursion: int = 0, expiration: int = GOLDEN_TIMESTAMP,
            body: bytes | None = None, body_length: int | None = None,
            credential: bytes = b"", length_delta: int = 0) -> bytes:  # fmt: skip
    """A request written field by field (independently of the codec under test).
    ``suggest=None`` leaves the suggested version out (byte 3 = 0)."""
    if body is None:
        body = resolution_body(handle, indexes, types)
    blen = len(body) if body_length is None else body_length
    header = struct.pack(">IIIHBBII", opcode, rc, flags, site_serial, recursion, 0, expiration,
                         blen)  # fmt: skip
    msg = header + body + struct.pack(">I", len(credential)) + credential
    sug_major, sug_minor = suggest if suggest is not None else (0, 0)
    env = struct.pack(">BBBBIIII", version[0], version[1], env_bits | (sug_major & 3), sug_minor,
                      session, request_id, sequence, len(msg) + length_delta)  # fmt: skip
    return env + msg


# -- the three answers ------------------------------------------------------------------------
_frontends: dict = {}


def general_reply(store, data: bytes, case_sensitive: bool = False) -> bytes | None:
    """The general path, as the drivers call it (a datagram shorter than an envelope is
    dropped by the UDP driver before it gets here: no reply)."""
    if len(data) < HC.ENVELOPE_SIZE:
        return None
    key = (id(store), case_sensitive)
    if key not in _frontends:
        _frontends[key] = HandleFrontEnd(Resolver([AuthorityHandler(store)]),
                                         Config(case_sensitive=case_sensitive))  # fmt: skip
    env = Envelope.from_wire(data)
    return asyncio.run(_frontends[key].answer(env, data[HC.ENVELOPE_SIZE :]))


def twin_reply(twin, store, data: bytes, case_sensitive: bool = False) -> bytes | None:
    with store.read() as txn:
        return twin.handle_resolve(data, txn, store.records_db, store.prefixes_db, case_sensitive)


def check_parity(store, cython_twin, data: bytes, case_sensitive: bool = False):
    """Assert the parity rules; return (twin reply, general reply)."""
    py = twin_reply(python_twin, store, data, case_sensitive)
    assert py is None or type(py) is bytes
    if cython_twin is not None:
        cy = twin_reply(cython_twin, store, data, case_sensitive)
        assert cy == py, "the Cython and pure twins disagree"
    general = general_reply(store, data, case_sensitive)
    if py is not None:
        assert py == general, "the fast path and the general path disagree"
    return py, general


def twins(cython_twin) -> list:
    return [python_twin] + ([cython_twin] if cython_twin is not None else [])


def decode(reply: bytes) -> Message:
    env = Envelope.from_wire(reply)
    assert env.length == len(reply) - HC.ENVELOPE_SIZE
    if env.length <= HC.MAX_MESSAGE:
        return Message.from_wire(reply)
    # Replies with the BIG records exceed what Message.from_wire accepts from a peer (256 KiB);
    # read them field by field.  Only hits get this large.
    header = Header.from_wire(reply, HC.ENVELOPE_SIZE)
    assert header.rc == RC.SUCCESS
    r = Reader(reply, 44, 44 + header.body_length)
    digest = None
    if header.opflags & RD:
        code = r.u8()
        if code == HC.HASH_MD5_OLD:
            r.pos -= 1
            digest = (code, r.blob())
        else:
            digest = (code, r.raw(DIGEST_SIZES[code]))
    body = ResolutionResponse.from_reader(r)
    assert r.at_end() and reply[44 + header.body_length :] == b"\0\0\0\0"
    return Message(env, header, body, digest)


# -- stores -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def golden_store(tmp_path_factory):
    """88.118.8/SN-2026-0001 holding exactly the two values of §3.5, under homed 88.118.8."""
    values = [read_value(Reader(GOLDEN_URL_VALUE)), read_value(Reader(GOLDEN_ADMIN_VALUE))]
    assert [encode_value(v) for v in values] == [GOLDEN_URL_VALUE, GOLDEN_ADMIN_VALUE]
    assert all(v.timestamp == GOLDEN_TIMESTAMP for v in values)
    store = LmdbStore(tmp_path_factory.mktemp("golden"), map_size=8 << 20)
    store.write([Change(b"88.118.8", pack(Record()), prefix=True),
                 Change(Identifier.parse(GOLDEN_HANDLE).key, pack(Record(values)))])  # fmt: skip
    yield store
    store.close()


# -- golden vectors ---------------------------------------------------------------------------
def test_request_builder_writes_the_golden_requests():
    assert request() == GOLDEN_REQUEST
    assert request(indexes=(1, 100), types=(b"URL",)) == GOLDEN_FILTERED_REQUEST


@pytest.mark.parametrize("data", [GOLDEN_REQUEST, GOLDEN_FILTERED_REQUEST],
                         ids=["plain", "types-and-indexes"])  # fmt: skip
def test_golden_resolution(golden_store, cython_twin_or_none, data):
    # Both values are selected by the filtered request, so its reply is the same message.
    for twin in twins(cython_twin_or_none):
        assert twin_reply(twin, golden_store, data) == GOLDEN_RESPONSE
    assert general_reply(golden_store, data) == GOLDEN_RESPONSE


def test_golden_rc100(golden_store, cython_twin_or_none):
    """A missing handle under the golden request's header: the §3.5 RC 100 message."""
    # (the §3.5 vector is the whole message after the envelope: header, body, credential)
    want = H("0201020b00000000010203040000000000000020") + GOLDEN_RC100_MESSAGE
    data = request(b"88.118.8/SN-2026-0002")
    for twin in twins(cython_twin_or_none):
        assert twin_reply(twin, golden_store, data) == want
    assert general_reply(golden_store, data) == want


def test_golden_digest_vector():
    """The §3.5 SHA-256 vector is the v2.10 digest of the golden request's header + body."""
    hb = GOLDEN_REQUEST[HC.ENVELOPE_SIZE : -4]
    assert codec.digest_of((2, 10), hb) == (HC.HASH_SHA256, GOLDEN_SHA256)
    assert hashlib.sha256(hb).digest() == GOLDEN_SHA256


# -- request digests and version negotiation --------------------------------------------------
# (envelope version, suggested version or None) → (reply version, digest hash code)
VERSIONS = [
    ((2, 0), None, (2, 0), HC.HASH_MD5_OLD),
    ((2, 1), (2, 1), (2, 1), HC.HASH_SHA1),
    ((2, 1), None, (2, 1), HC.HASH_SHA1),
    ((2, 6), None, (2, 6), HC.HASH_SHA1),
    ((2, 7), None, (2, 7), HC.HASH_SHA256),
    ((2, 10), (2, 10), (2, 10), HC.HASH_SHA256),
    ((2, 11), (2, 11), (2, 11), HC.HASH_SHA256),
    ((2, 11), (2, 12), (2, 11), HC.HASH_SHA256),
    ((2, 3), (2, 12), (2, 11), HC.HASH_SHA256),  # suggestion above ours: ours
    ((2, 1), (2, 10), (2, 10), HC.HASH_SHA256),  # actual compat version, suggesting more
    ((2, 11), (2, 6), (2, 6), HC.HASH_SHA1),  # suggesting less than the actual version
    ((2, 20), None, (2, 11), HC.HASH_SHA256),
    ((2, 5), (1, 9), (1, 9), HC.HASH_MD5_OLD),  # a suggested major below 2
    ((2, 5), (3, 1), (2, 11), HC.HASH_SHA256),
    ((2, 11), (2, 0), (2, 0), HC.HASH_MD5_OLD),  # suggesting 2.0: a suggestion all the same
    ((2, 6), (0, 9), (2, 6), HC.HASH_SHA1),  # suggested major 0: no suggestion
    ((2, 11), (0, 0), (2, 11), HC.HASH_SHA256),
]
_HASH = {HC.HASH_MD5_OLD: hashlib.md5, HC.HASH_SHA1: hashlib.sha1, HC.HASH_SHA256: hashlib.sha256}


@pytest.mark.parametrize("version, suggest, reply_version, code", VERSIONS,
                         ids=[f"{v[0]}.{v[1]}-suggests-{s}"
                              for v, s, _, _ in VERSIONS])  # fmt: skip
@pytest.mark.parametrize("handle, rc", [(GOLDEN_HANDLE, RC.SUCCESS),
                                        (b"88.118.8/missing", RC.HANDLE_NOT_FOUND),
                                        (b"88.118.8/private", RC.VALUES_NOT_FOUND)],
                         ids=["hit", "miss", "empty"])  # fmt: skip
def test_request_digest(parity_stores, cython_twin_or_none, version, suggest, reply_version,
                        code, handle, rc):  # fmt: skip
    store = parity_stores[False]
    for flags in (DEFAULT_FLAGS | RD, DEFAULT_FLAGS):
        data = request(handle, version=version, suggest=suggest, flags=flags)
        fast, general = check_parity(store, cython_twin_or_none, data)
        assert fast is not None
        msg = decode(general)
        assert (msg.envelope.major, msg.envelope.minor) == reply_version
        assert general[2:4] == bytes((HC.OUR_MAJOR, HC.OUR_MINOR))  # we suggest ours
        assert msg.header.rc == rc and msg.header.opflags == flags
        if flags & RD:
            hb = data[HC.ENVELOPE_SIZE : -4]
            assert msg.digest == (code, _HASH[code](hb).digest())
            body = general[44:]
            if code == HC.HASH_MD5_OLD:
                assert body[:4] == b"\0\0\0\x10"  # int4-length-prefixed MD5, no code byte
            else:
                assert body[0] == code
        else:
            assert msg.digest is None


def test_v210_digest_is_sha256_of_the_request(parity_stores, cython_twin_or_none):
    """An RD request at 2.10 gets SHA-256 of its own header + body; the bytes hashed differ from
    the §3.5 vector's input only in the RD bit, so hashing them without it gives the vector."""
    data = request(version=(2, 10), suggest=(2, 10), flags=DEFAULT_FLAGS | RD)
    fast, general = check_parity(parity_stores[False], cython_twin_or_none, data)
    assert fast is not None
    hb = data[HC.ENVELOPE_SIZE : -4]
    assert general[44:77] == b"\x03" + hashlib.sha256(hb).digest()
    without_rd = hb[:8] + struct.pack(">I", DEFAULT_FLAGS) + hb[12:]
    assert without_rd == GOLDEN_REQUEST[HC.ENVELOPE_SIZE : -4]
    assert hashlib.sha256(without_rd).digest() == GOLDEN_SHA256


# -- cases ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class HCase:
    id: str
    data: bytes
    expect: str  # hit | miss | empty | declined | silent (general path: no reply)
    want: tuple[int, ...] | None = None  # hit: value indexes; declined: the general path's rc
    case_sensitive: bool = False


def _reply_size(handle: str | bytes, indexes: tuple[int, ...]) -> int:
    """Bytes after the envelope of the RC 1 reply selecting ``indexes`` of ``handle``'s record
    (an upper bound: records are looked up by the case-folded name too)."""
    raw = handle if isinstance(handle, bytes) else handle.encode()
    by_key = {k.upper(): r for k, r in vectors.records()}
    record = {v.index: v for v in by_key.get(raw.decode("utf-8", "replace").upper(), ())}
    values = sum(len(encode_value(record[i])) for i in indexes if i in record)
    return 24 + 4 + len(raw) + 4 + values + 4


def _vector_cases() -> list[HCase]:
    """Every HTTP parity vector as a Handle request: same records, same selection."""
    out = []
    for c in vectors.cases():
        data = request(c.handle, c.indexes, tuple(t.encode() for t in c.types))
        if c.expect == "declined":
            # 102 for an invalid identifier, 301 for a prefix not held here
            try:
                Identifier.parse(c.handle, case_sensitive=c.case_sensitive)
                rc = RC.SERVER_NOT_RESP
            except InvalidIdentifier:
                rc = RC.INVALID_HANDLE
            out.append(HCase("vec-" + c.id, data, "declined", (rc,), c.case_sensitive))
        elif c.expect == "hit" and _reply_size(c.handle, c.want) > HC.MAX_MESSAGE:
            # The REST API has no size limit; a Handle message does (256 KiB): the fast path
            # declines and the general path answers RC 2 with a hint to filter.
            out.append(HCase("vec-" + c.id, data, "declined", (RC.ERROR,), c.case_sensitive))
        else:
            out.append(HCase("vec-" + c.id, data, c.expect, c.want, c.case_sensitive))
        if c.expect == "hit" and c.id in ("sn", "typed-all", "type-subtypes", "big-type", "na"):
            rd = request(c.handle, c.indexes, tuple(t.encode() for t in c.types),
                         flags=DEFAULT_FLAGS | RD, version=(2, 11), suggest=(2, 11))  # fmt: skip
            out.append(HCase("vec-" + c.id + "-rd", rd, "hit", c.want, c.case_sensitive))
    return out


R = dict(vectors.records())
SN = R["88.118.8/SN-2026-0001"]
MIXED_PUBLIC = tuple(x.index for x in vectors.MIXED if x.public_read)


def _hit(cid, data, values, pred=lambda x: True, **kw) -> HCase:
    want = tuple(x.index for x in values if x.public_read and pred(x))
    return HCase(cid, data, "hit", want, **kw)


def _declined(cid, data, rc) -> HCase:
    return HCase(cid, data, "declined", (rc,))


def _body_with(handle_len=None, indexes=None, types=None, tail=b"") -> bytes:
    """A resolution body with raw, possibly lying, counts and lengths."""
    h = GOLDEN_HANDLE
    b = struct.pack(">i", len(h) if handle_len is None else handle_len) + h
    b += indexes if indexes is not None else b"\0\0\0\0"
    b += types if types is not None else b"\0\0\0\0"
    return b + tail


HANDLE_CASES = [
    # flags the fast path answers: PO set or unset (values are withheld either way), AT, DNRF
    _hit("po-set", request(flags=DEFAULT_FLAGS), SN),
    _hit("po-unset", request(flags=DEFAULT_FLAGS & ~HC.FLAG_PUBLIC_ONLY), SN),
    _hit("no-flags", request(flags=0), SN),
    _hit("authoritative", request(flags=DEFAULT_FLAGS | HC.FLAG_AUTHORITATIVE), SN),
    _hit("at-rd", request(flags=HC.FLAG_AUTHORITATIVE | RD, version=(2, 11), suggest=None), SN),
    _hit("keep-alive-continuous", request(flags=HC.FLAG_KEEP_ALIVE | HC.FLAG_CONTINUOUS), SN),
    _hit("all-other-flags", request(flags=0xFFFFFFFF & ~(HC.FLAG_CERTIFY | HC.FLAG_ENCRYPT)), SN),
    # the header fields a reply copies
    _hit("header-fields", request(site_serial=7, recursion=3, expiration=0xFFFFFFFF,
                                  session=0xDEADBEEF, request_id=0xFFFFFFFF), SN),  # fmt: skip
    _hit("unused-envelope-bits", request(env_bits=0x1C), SN),
    # non-public values are withheld
    HCase("mixed-public-only", request(b"88.118.8/mixed"), "hit", MIXED_PUBLIC),
    _declined("mixed-po-unset", request(b"88.118.8/mixed", flags=0), RC.AUTHENTICATION_NEEDED),
    HCase("mixed-asked-withheld", request(b"88.118.8/mixed", (2, 4), (b"SECRET",)), "empty"),
    HCase("mixed-asked-some", request(b"88.118.8/mixed", (2, 3), (b"SECRET",)), "hit", (3,)),
    HCase("private-all", request(b"88.118.8/private"), "empty"),
    # without the public-only flag, values without public read are asked for: the fast path
    # declines, the general path asks for authentication (RC 402)
    _declined("private-all-rd", request(b"88.118.8/private", flags=RD),
              RC.AUTHENTICATION_NEEDED),
    HCase("private-all-po", request(b"88.118.8/private", flags=DEFAULT_FLAGS | RD), "empty"),
    HCase("empty-record", request(b"88.118.8/empty"), "empty"),
    # index filters with values the HTTP API cannot send
    HCase("index-negative", request(b"88.118.8/typed", (-1, 0)), "empty"),
    HCase("index-and-type", request(b"88.118.8/typed", (1,), (b"EMAIL",)), "hit", (1, 2)),
    HCase("empty-type", request(b"88.118.8/typed", (), (b"",)), "empty"),
    # prefix handles
    _hit("na", request(b"0.NA/88.118.8"), vectors.prefix_handles()[0][1]),
    _declined("na-slashless-rd", request(b"88.118.8", flags=RD), RC.AUTHENTICATION_NEEDED),
    _hit("na-slashless-po-rd", request(b"88.118.8", flags=DEFAULT_FLAGS | RD),
         vectors.prefix_handles()[0][1]),
    HCase("na-foreign", request(b"0.NA/99.1"), "declined", (RC.SERVER_NOT_RESP,)),
    # unicode and '/' in suffixes, quotes
    _hit("unicode", request(("88.118.8/" + vectors.UNICODE_SUFFIX).encode()),
         R["88.118.8/" + vectors.UNICODE_SUFFIX]),
    _hit("slashes", request(b"88.118.8/a/b/c//d/"), R["88.118.8/a/b/c//d/"]),
    _hit("quote", request(b'88.118.8/"'), R['88.118.8/"']),
    # big records: one unsplit reply, > 512 bytes
    # a reply over 256 KiB is refused (RC 2, a hint to filter); a filtered one is answered
    _declined("big", request(b"88.118.8/big"), RC.ERROR),
    _hit("big-filtered-rd", request(b"88.118.8/big", (3, 6), (b"EMAIL",), flags=RD, version=(2, 0),
                                    suggest=None), vectors.BIG,
         lambda x: x.type == "EMAIL" or x.index in (3, 6)),
    _declined("big-mixed", request(b"88.118.8/big-mixed"), RC.ERROR),
    _hit("big-filtered", request(b"88.118.8/big-mixed", tuple(range(0, 800, 7)), (b"URL",)),
         vectors.BIG_MIXED, lambda x: x.type == "URL" or x.index in range(0, 800, 7)),
    # case-sensitive mode
    _hit("cs-as-stored", request(b"88.118.8/SN-2026-0001"), SN, case_sensitive=True),
    HCase("cs-lower", request(b"88.118.8/sn-2026-0001"), "miss", case_sensitive=True),
    _hit("cs-prefix-folded", request(b"test.PREFIX/Item-1"), R["TEST.Prefix/Item-1"],
         case_sensitive=True),
    HCase("cs-suffix-kept", request(b"test.prefix/item-1"), "miss", case_sensitive=True),
    _hit("cs-na", request(b"0.na/test.prefix"), vectors.prefix_handles()[3][1],
         case_sensitive=True),
    # the fast path declines, the general path answers
    _declined("foreign", request(b"99.1/x"), RC.SERVER_NOT_RESP),
    _declined("invalid-utf8", request(b"88.118.8/\xff"), RC.INVALID_HANDLE),
    _declined("invalid-empty", request(b""), RC.INVALID_HANDLE),
    _declined("invalid-control", request(b"88.118.8/a\nb"), RC.INVALID_HANDLE),
    _declined("invalid-too-long", request(b"88.118.8/" + b"x" * 2040), RC.INVALID_HANDLE),
    _declined("certify", request(flags=DEFAULT_FLAGS | HC.FLAG_CERTIFY), RC.SUCCESS),
    _declined("encrypt", request(flags=DEFAULT_FLAGS | HC.FLAG_ENCRYPT),
              RC.OPERATION_NOT_SUPPORTED),
    _declined("sequence-1", request(sequence=1), RC.SUCCESS),
    _declined("truncated-flag", request(env_bits=0x20), RC.SUCCESS),
    _declined("compressed", request(env_bits=0x80), RC.PROTOCOL_ERROR),
    _declined("encrypted-envelope", request(env_bits=0x40), RC.PROTOCOL_ERROR),
    _declined("credential", request(credential=b"\0\0\0\0" + bytes(range(12))), RC.SUCCESS),
    _declined("opcode-2", request(opcode=2, body=b""), RC.SUCCESS),
    _declined("opcode-unknown", request(opcode=999), RC.OPERATION_NOT_SUPPORTED),
    _declined("major-1", request(version=(1, 9), suggest=None), RC.PROTOCOL_ERROR),
    _declined("major-3", request(version=(3, 0), suggest=None), RC.PROTOCOL_ERROR),
    _declined("envelope-length-short", request(length_delta=-1), RC.SUCCESS),
    _declined("envelope-length-long", request(length_delta=1), RC.SUCCESS),
    # malformed bodies: the general path answers RC 4
    _declined("handle-length-overruns", request(body=_body_with(handle_len=200)),
              RC.PROTOCOL_ERROR),
    _declined("handle-length-negative", request(body=_body_with(handle_len=-1)),
              RC.PROTOCOL_ERROR),
    _declined("handle-only", request(body=_s(GOLDEN_HANDLE)), RC.PROTOCOL_ERROR),
    _declined("no-type-count", request(body=_body_with(types=b"")), RC.PROTOCOL_ERROR),
    _declined("index-count-negative", request(body=_body_with(indexes=b"\xff\xff\xff\xff")),
              RC.PROTOCOL_ERROR),
    _declined("index-count-overruns", request(body=_body_with(indexes=b"\0\0\0\x03\0\0\0\x01")),
              RC.PROTOCOL_ERROR),
    _declined("index-count-eats-type-count",
              request(body=_body_with(indexes=b"\0\0\0\x02\0\0\0\x01", types=b"\0\0\0\0")),
              RC.PROTOCOL_ERROR),
    _declined("type-count-negative", request(body=_body_with(types=b"\x80\0\0\0")),
              RC.PROTOCOL_ERROR),
    _declined("type-count-overruns", request(body=_body_with(types=b"\0\0\0\x02\0\0\0\x01U")),
              RC.PROTOCOL_ERROR),
    _declined("type-count-huge", request(body=_body_with(types=b"\x7f\xff\xff\xff")),
              RC.PROTOCOL_ERROR),
    _declined("type-length-overruns", request(body=_body_with(types=b"\0\0\0\x01\0\0\0\x09URL")),
              RC.PROTOCOL_ERROR),
    _declined("type-length-negative", request(body=_body_with(types=b"\0\0\0\x01\xff\xff\xff\xfe")),
              RC.PROTOCOL_ERROR),
    _declined("trailing-byte", request(body=_body_with(tail=b"\0")), RC.PROTOCOL_ERROR),
    _declined("trailing-int", request(body=_body_with(tail=b"\0\0\0\0")), RC.PROTOCOL_ERROR),
    _declined("body-length-long", request(body_length=34), RC.PROTOCOL_ERROR),
    _declined("body-length-short", request(body_length=32), RC.PROTOCOL_ERROR),
    _declined("body-length-huge", request(body_length=0xFFFFFFF0), RC.PROTOCOL_ERROR),
    # types are compared as bytes (reference Util.isParentTypeInArray): not UTF-8, no match
    HCase("type-not-utf8", request(b"88.118.8/typed", (), (b"UR\xff",)), "empty"),
    # longer than HC.MAX_MESSAGE (no driver hands such a message to the fast path, but the
    # function's contract is the general path's: RC 4)
    _declined("oversized-request", request(indexes=tuple(range(1, 66000))), RC.PROTOCOL_ERROR),
    # no reply at all
    HCase("response-code-set", request(rc=1), "silent"),
    HCase("response-code-100", request(rc=100, flags=RD), "silent"),
    HCase("no-header", request()[:30], "silent"),
    HCase("envelope-only", request()[:20], "silent"),
    HCase("short", b"\x02\x01", "silent"),
    HCase("empty", b"", "silent"),
]

CASES = _vector_cases() + HANDLE_CASES


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(parity_stores, cython_twin_or_none, case):
    store = parity_stores[case.case_sensitive]
    fast, general = check_parity(store, cython_twin_or_none, case.data, case.case_sensitive)
    if case.expect == "silent":
        assert fast is None and general is None
        return
    msg = decode(general)
    req_env = Envelope.from_wire(case.data)
    assert msg.envelope.request_id == req_env.request_id
    assert msg.envelope.session_id == req_env.session_id
    assert msg.envelope.sequence == 0 and not msg.envelope.truncated
    if case.expect == "declined":
        assert fast is None, "the fast path must leave this request to the general path"
        assert msg.header.rc == case.want[0]
        return
    assert fast is not None, "a held prefix's plain resolution must be answered by the fast path"
    # the reply copies the request header (op code, flags, serial, recursion, expiration)
    assert general[20:24] == case.data[20:24] and general[28:40] == case.data[28:40]
    assert general[-4:] == b"\0\0\0\0"
    handle = Message.from_parts(req_env, case.data[20:]).body.handle
    if case.expect == "hit":
        assert case.want, "a hit case must expect values"
        assert msg.header.rc == RC.SUCCESS
        assert isinstance(msg.body, ResolutionResponse) and msg.body.handle == handle
        assert tuple(v.index for v in msg.body.values) == case.want
    elif case.expect == "miss":
        assert msg.header.rc == RC.HANDLE_NOT_FOUND and msg.body.message == b""
    else:
        assert case.expect == "empty"
        assert msg.header.rc == RC.VALUES_NOT_FOUND and msg.body.message == b""


def test_cases_cover_every_kind():
    kinds = {c.expect for c in CASES}
    assert kinds == {"hit", "miss", "empty", "declined", "silent"}
    assert len({c.id for c in CASES}) == len(CASES)


def test_big_reply_is_one_unsplit_message(parity_stores, cython_twin_or_none):
    store = parity_stores[False]
    data = request(b"88.118.8/big", (), (b"EMAIL",))
    for twin in twins(cython_twin_or_none):
        out = twin_reply(twin, store, data)
        assert 100 * HC.UDP_PACKET < len(out) <= HC.ENVELOPE_SIZE + HC.MAX_MESSAGE
        env = Envelope.from_wire(out)
        assert env.length == len(out) - HC.ENVELOPE_SIZE
        assert env.sequence == 0 and not env.truncated
        emails = sum(1 for x in vectors.BIG if x.type == "EMAIL")
        assert out[44 + 4 + len(b"88.118.8/big") :][:4] == struct.pack(">i", emails)


def test_selector_exports_the_fast_twin():
    if native.NO_EXTENSIONS:
        assert native.handle_resolve is python_twin.handle_resolve
    else:
        from native import _hotpath

        assert native.handle_resolve is _hotpath.handle_resolve


def test_corrupt_record_is_declined(tmp_path, cython_twin_or_none):
    store = LmdbStore(tmp_path / "s", map_size=8 << 20)
    try:
        good = pack(Record(vectors.MIXED))
        bad_directory = good[:12] + b"\0\0\0\4\xff\xff\xff\xff" + good[20:]
        store.write([Change(b"88", pack(Record()), prefix=True),
                     Change(b"88/X", good[:-1]),  # truncated
                     Change(b"88/Y", bad_directory)])  # fmt: skip
        for handle in (b"88/x", b"88/y"):
            for indexes, types in (((), ()), ((), (b"URL",)), ((1,), ())):
                fast, general = check_parity(store, cython_twin_or_none,
                                             request(handle, indexes, types))  # fmt: skip
                assert fast is None
                assert decode(general).header.rc == RC.ERROR
    finally:
        store.close()


# -- generated requests -----------------------------------------------------------------------
_HANDLES = ([h.encode() for h, _ in vectors.records()]
            + [h.encode() for h, _ in vectors.prefix_handles()]
            + [b"88.118.8", b"88.118.9", b"Test.Prefix", b"88.118.8/missing", b"99.1/x",
               b"0.NA/99", b"88.118/x", b"88.118.8/\xff", b"", b"88.118.8/a\x00"])  # fmt: skip
_TYPES = ["URL", "url", "EMAIL", "PRODUCT.", "product.batch", "HS_ADMIN", "HS_SITE", "", ".",
          "类型", 'Q"T\\', "SECRET", "DESC", "HS_SECKEY"]  # fmt: skip
_INDEXES = [1, 2, 3, 4, 5, 7, 13, 100, 200, 300, 0, -1, 2**31 - 1, -(2**31)]


def _swapcase_ascii(b: bytes) -> bytes:
    return bytes(c ^ 0x20 if 65 <= (c & ~0x20) <= 90 else c for c in b)


@st.composite
def _requests(draw):
    handle = draw(st.one_of(
        st.sampled_from(_HANDLES),
        st.sampled_from(_HANDLES).map(_swapcase_ascii),
        st.text(min_size=1, max_size=12).map(lambda s: ("88.118.8/" + s).encode("utf-8",
                                                                                 "surrogatepass")),
    ))  # fmt: skip
    indexes = tuple(draw(st.lists(st.one_of(st.sampled_from(_INDEXES),
                                            st.integers(-(2**31), 2**31 - 1)), max_size=4)))
    types = tuple(t.encode() for t in draw(st.lists(st.sampled_from(_TYPES), max_size=3)))
    flags = draw(st.one_of(st.sampled_from([DEFAULT_FLAGS, DEFAULT_FLAGS | RD, 0, RD,
                                            HC.FLAG_AUTHORITATIVE | RD]),
                           st.integers(0, 2**32 - 1)))  # fmt: skip
    version = (2, draw(st.integers(0, 15)))
    suggest = draw(st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(0, 15))))
    fields = draw(st.fixed_dictionaries({
        "session": st.integers(0, 2**32 - 1), "request_id": st.integers(0, 2**32 - 1),
        "site_serial": st.integers(0, 0xFFFF), "recursion": st.integers(0, 255),
        "expiration": st.integers(0, 2**32 - 1)}))  # fmt: skip
    return handle, indexes, types, request(handle, indexes, types, flags=flags, version=version,
                                           suggest=suggest, **fields)  # fmt: skip


def _fast_eligible(store, data: bytes, handle: bytes, case_sensitive: bool) -> bool:
    """Whether the request is plain resolution under a prefix held here (the fast path's)."""
    if struct.unpack_from(">I", data, 28)[0] & (HC.FLAG_CERTIFY | HC.FLAG_ENCRYPT):
        return False
    try:
        ident = Identifier.parse(handle, case_sensitive=case_sensitive)
    except InvalidIdentifier:
        return False
    if ident.is_prefix_handle:
        return store.get_prefix(ident.suffix_key) is not None
    return store.get_prefix(ident.prefix_key) is not None


_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(req=_requests(), cs=st.booleans())
def test_generated_requests(parity_stores, cython_twin_or_none, req, cs):
    handle, indexes, types, data = req
    store = parity_stores[cs]
    fast, general = check_parity(store, cython_twin_or_none, data, cs)
    assert general is not None
    rc = decode(general).header.rc
    if _fast_eligible(store, data, handle, cs) and rc not in (RC.ERROR,
                                                              RC.AUTHENTICATION_NEEDED):
        assert fast is not None and rc in (RC.SUCCESS, RC.HANDLE_NOT_FOUND, RC.VALUES_NOT_FOUND)
    elif rc == RC.AUTHENTICATION_NEEDED:
        # values without public read asked for without the public-only flag
        assert fast is None and not struct.unpack_from(">I", data, 28)[0] & HC.FLAG_PUBLIC_ONLY
    else:
        # RC 2 here is the reply-over-256-KiB refusal (e.g. the unfiltered BIG record), which
        # the fast path leaves to the general path
        assert fast is None
        assert rc != RC.ERROR or b"reply longer than" in decode(general).body.message


@_SETTINGS
@given(raw=st.one_of(
    st.binary(max_size=120),
    # a plausible envelope and header in front of random bytes reaches the body parser
    st.tuples(st.binary(max_size=80), st.sampled_from([0, RD]), st.booleans()).map(
        lambda x: request(body=x[0], flags=x[1], credential=b"" if x[2] else b"\0")),
))  # fmt: skip
def test_random_bytes(parity_stores, cython_twin_or_none, raw):
    check_parity(parity_stores[False], cython_twin_or_none, raw)


_BASES = [
    request(), request(flags=DEFAULT_FLAGS | RD, version=(2, 11), suggest=(2, 11)),
    request(b"88.118.8/typed", (1, 100), (b"URL", b"PRODUCT.")),
    request(b"88.118.8/mixed", (2,), (b"EMAIL",), flags=RD, version=(2, 0), suggest=None),
    request(b"0.NA/88.118.8"), request(b"88.118.8/missing", flags=RD),
    request(b"88.118.8/private"), request(b"test.prefix/item-1"),
]  # fmt: skip


@st.composite
def _mutated(draw):
    data = bytearray(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "set", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[pos:]
    # keep the lengths consistent most of the time, so the body parser is what gets tested
    if len(data) >= 48 and draw(st.booleans()):
        data[16:20] = struct.pack(">I", len(data) - 20)
        if draw(st.booleans()):
            data[40:44] = struct.pack(">I", len(data) - 48)
    return bytes(data)


@_SETTINGS
@given(data=_mutated(), cs=st.booleans())
def test_mutated_requests(parity_stores, cython_twin_or_none, data, cs):
    check_parity(parity_stores[cs], cython_twin_or_none, data, cs)
