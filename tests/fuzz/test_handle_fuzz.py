"""Fuzzing of everything that reads Handle-protocol bytes from a peer (hypothesis).

Random bytes and mutated valid messages go through the codec (``Message.from_wire``,
``Message.from_parts``), the transports' reassembly (``Reassembler.feed``,
``FrameBuffer.feed``), both twins of the fast path (``handle_resolve``, imported from
``native._hotpath_py`` and, when it has it, ``native._hotpath``) and the general path
(``HandleFrontEnd.answer`` over a real LMDB store loaded with registry/demo.jsonl).

Contract: only ``HandleProtocolError`` may escape the codec and the transports; the twins and
the front end never raise, and whatever they answer is a well-formed reply to the request.
Where the fast path answers, the general path must answer the same bytes (DESIGN §1.5).
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import golden
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from native import _hotpath_py
from registry import bulk
from resolver.config import Config
from resolver.core.authority import AuthorityHandler
from resolver.core.engine import Resolver
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    Envelope, HandleProtocolError, Header, Message, Opaque, ResolutionRequest, ValuesBody,
    envelope_flags,
)  # fmt: skip
from resolver.protocols.handle.tcp import FrameBuffer
from resolver.protocols.handle.udp import Reassembler, split
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.store.lmdb_store import LmdbStore
from resolver.values import HandleValue

try:
    from native import _hotpath as _cython
except ImportError:  # not built (IDNODE_NO_EXTENSIONS runs): the pure twin is fuzzed alone
    _cython = None

DEMO = Path(__file__).resolve().parents[2] / "registry" / "demo.jsonl"

TWINS = [pytest.param(_hotpath_py.handle_resolve, id="python")]
if getattr(_cython, "handle_resolve", None) is not None:
    TWINS.append(pytest.param(_cython.handle_resolve, id="cython"))

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- seeds: valid messages to mutate --------------------------------------------------------------
GOLDEN_REQUEST = golden.REQUEST
GOLDEN_RESPONSE = golden.RESPONSE


def _req(handle: bytes, indexes=(), types=(), flags=0x19000000, env_flags=0x020B, minor=11,
         opcode=1, body=None, request_id=0x01020304) -> bytes:  # fmt: skip
    body = body if body is not None else ResolutionRequest(handle, indexes, types)
    return Message(Envelope(2, minor, env_flags, 0, request_id),
                   Header(opcode, 0, flags, 0xFFFF, 0, 0, 0x6955B900), body).to_wire()  # fmt: skip


SEEDS = [
    GOLDEN_REQUEST,
    GOLDEN_RESPONSE,
    _req(b"88.118.8/demo-1"),
    _req(b"88.118.8/demo-1", (1, 100), (b"URL",), flags=0x19800000),
    _req(b"88.118.8/DEMO-2", (), (b"PRODUCT.",), env_flags=0x0207, minor=10),
    _req(b"88.118.8/none", flags=C.FLAG_REQUEST_DIGEST, env_flags=0, minor=1),
    _req(b"0.NA/88.118.8", flags=0x99800000),
    _req(b"88.118.8"),
    _req(b"99.1/elsewhere"),
    _req(b"", opcode=C.OpCode.GET_SITE_INFO, body=Opaque()),
    _req(b"", opcode=C.OpCode.CREATE_HANDLE,
         body=ValuesBody(b"88.118.8/new", (HandleValue(1, "URL", b"https://example.com/"),))),
    _req(b"", opcode=2001, body=Opaque(b"\x00\x00\x00\x04idis")),
]
TC_SEEDS = split(_req(b"88.118.8/demo-1", (), (b"URL",) * 120))

INTERESTING_INTS = [0, 1, 4, 19, 20, 24, 0x7F, 0xFF, 2048, 2049, C.MAX_MESSAGE, C.MAX_MESSAGE + 1,
                    0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]  # fmt: skip


@st.composite
def mutated(draw, seeds=SEEDS, fix_length: bool | None = None) -> bytes:
    """A seed message with 1–4 mutations; the envelope's length is usually made to match, so
    the mutation reaches the header and body instead of stopping at the length check."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["byte", "int32", "truncate", "insert", "delete", "append"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "byte" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "int32":
            value = draw(st.one_of(st.sampled_from(INTERESTING_INTS), st.integers(0, 0xFFFFFFFF)))
            data[pos : pos + 4] = value.to_bytes(4, "big")
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            data += draw(st.binary(min_size=1, max_size=64))
    fix = draw(st.booleans()) if fix_length is None else fix_length
    if fix and len(data) >= C.ENVELOPE_SIZE:
        data[16:20] = struct.pack(">I", len(data) - C.ENVELOPE_SIZE)
    return bytes(data)


datagrams = st.one_of(st.binary(max_size=600), mutated())


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    store = LmdbStore(tmp_path_factory.mktemp("handle-fuzz") / "store", map_size=64 << 20)
    with open(DEMO, encoding="utf-8") as fh:
        report = bulk.load(store, fh)
    assert report.ok and report.loaded == 3
    yield store
    store.close()


@pytest.fixture(scope="module")
def frontend(demo_store):
    return HandleFrontEnd(Resolver([AuthorityHandler(demo_store)]), Config())


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _check_reply(reply: bytes, request: bytes) -> Message:
    """A reply must decode, be a response, and echo the request id and session id."""
    m = Message.from_wire(reply)
    assert m.is_response
    assert m.envelope.request_id == Envelope.from_wire(request).request_id
    assert m.envelope.session_id == Envelope.from_wire(request).session_id
    assert m.envelope.flags == envelope_flags()
    return m


# =============================================================================================
# Codec and transports: only HandleProtocolError escapes
# =============================================================================================


def _decode(data: bytes) -> None:
    try:
        m = Message.from_wire(data)
    except HandleProtocolError:
        return
    assert m.to_wire() == data  # whatever decodes re-encodes to the same bytes


@FUZZ
@given(st.binary(max_size=700))
def test_decoder_random_bytes(data):
    _decode(data)


@FUZZ
@given(st.binary(min_size=20, max_size=20), st.binary(max_size=400))
def test_decoder_random_payload_behind_a_matching_envelope(env, payload):
    _decode(env[:16] + struct.pack(">I", len(payload)) + payload)


@FUZZ
@given(mutated())
def test_decoder_mutated_messages(data):
    _decode(data)


@FUZZ
@given(st.builds(Envelope, *[st.integers(0, 255)] * 2, st.integers(0, 0xFFFF),
                 *[st.integers(0, 0xFFFFFFFF)] * 4),  # fmt: skip
       st.one_of(st.binary(max_size=400), mutated().map(lambda d: d[20:])))
def test_from_parts(env, payload):
    try:
        Message.from_parts(env, payload)
    except HandleProtocolError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2), st.one_of(st.binary(max_size=600),
                                                         mutated(TC_SEEDS, fix_length=False),
                                                         st.sampled_from(TC_SEEDS))),
                max_size=40))  # fmt: skip
def test_reassembler(packets):
    r = Reassembler(max_messages=8, max_bytes=8192)
    for peer, data in packets:
        try:
            out = r.feed(peer, data)
        except HandleProtocolError:
            continue
        assert 0 <= r.held_bytes <= 8192 and len(r) <= 8
        if out is not None:
            env, payload = out
            assert len(payload) == env.length <= C.MAX_MESSAGE


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=300), mutated(), mutated(TC_SEEDS)), max_size=20))
def test_frame_buffer(chunks):
    fb = FrameBuffer()
    for chunk in chunks:
        try:
            for env, frame in fb.feed(chunk):
                assert len(frame) == C.ENVELOPE_SIZE + env.length
                assert env.length <= C.MAX_MESSAGE
        except HandleProtocolError:
            return  # the server hangs up: nothing more is read from this peer
        assert len(fb) <= C.ENVELOPE_SIZE + C.MAX_MESSAGE


# =============================================================================================
# The fast path (both twins) and the general path never raise
# =============================================================================================


@pytest.mark.parametrize("handle_resolve", TWINS)
@FUZZ
@given(data=datagrams, case_sensitive=st.booleans())
def test_twins_never_raise(handle_resolve, demo_store, data, case_sensitive):
    with demo_store.read() as txn:
        out = handle_resolve(data, txn, demo_store.records_db, demo_store.prefixes_db,
                             case_sensitive)  # fmt: skip
    if out is not None:
        assert isinstance(out, bytes)
        m = _check_reply(out, data)
        assert m.header.rc in (1, 100, 200)


@pytest.mark.parametrize("handle_resolve", TWINS)
def test_twins_answer_the_seeds(handle_resolve, demo_store):
    # The fuzzing above is only meaningful if the twins do answer valid requests.
    with demo_store.read() as txn:
        out = handle_resolve(SEEDS[2], txn, demo_store.records_db, demo_store.prefixes_db, False)
    assert Message.from_wire(out).header.rc == 1


@FUZZ
@given(data=datagrams)
def test_frontend_never_raises(frontend, loop, data):
    if len(data) < C.ENVELOPE_SIZE:
        return  # the UDP and TCP drivers never hand a shorter datagram to the front end
    env = Envelope.from_wire(data)
    out = loop.run_until_complete(frontend.answer(env, data[C.ENVELOPE_SIZE :]))
    if out is not None:
        _check_reply(out, data)


@FUZZ
@given(st.lists(st.sampled_from(TC_SEEDS), min_size=1, max_size=12), st.integers(0, 0xFFFFFFFF))
def test_frontend_after_reassembly(frontend, loop, packets, request_id):
    # What the UDP driver does with TC packets: reassemble, then answer the first envelope.
    r = Reassembler()
    for p in packets:
        p = p[:8] + request_id.to_bytes(4, "big") + p[12:]
        out = r.feed("peer", p)
        if out is not None:
            env, payload = out
            reply = loop.run_until_complete(frontend.answer(env, payload))
            assert Message.from_wire(reply).header.rc == 1


@FUZZ
@given(data=mutated(SEEDS[2:9], fix_length=True))
def test_fast_and_general_paths_agree(frontend, loop, demo_store, data):
    with demo_store.read() as txn:
        fast = _hotpath_py.handle_resolve(data, txn, demo_store.records_db,
                                          demo_store.prefixes_db, False)  # fmt: skip
    if fast is None:
        return
    general = loop.run_until_complete(frontend.answer(Envelope.from_wire(data), data[20:]))
    assert general == fast, Message.from_wire(data)


@pytest.mark.parametrize("types", [(b"\xff",), (b"URL", b"\xc3\x28"), (b"\xed\xa0\x80",)])
@pytest.mark.parametrize("handle", [b"88.118.8/demo-1", b"88.118.8/none", b"0.NA/88.118.8"])
def test_non_utf8_types_same_answer_on_both_paths(frontend, loop, demo_store, handle, types):
    # The reference compares requested types as bytes (Util.isParentTypeInArray); the fast path
    # does too.  Whatever the answer, both paths must give it.
    data = _req(handle, (), types)
    with demo_store.read() as txn:
        fast = _hotpath_py.handle_resolve(data, txn, demo_store.records_db,
                                          demo_store.prefixes_db, False)  # fmt: skip
    assert fast is not None
    general = loop.run_until_complete(frontend.answer(Envelope.from_wire(data), data[20:]))
    assert Message.from_wire(general).header.rc == Message.from_wire(fast).header.rc
    assert general == fast
