"""Native admin operations through ``HandleFrontEnd`` with a ``registry.native_admin.NativeAdmin``
over a real LMDB store: the RC 402 challenge → OC 200 answer flow, each admin op code, the
authenticated read, and every refusal (asserting that nothing was written).

The client side is played with the project's own pieces (``resolver.upstream.client.prepare``,
``SecretKeyAuth`` / ``PublicKeyAuth``), so the answers are exactly what ``idnode create`` sends.
Two enterprises as Handle.net sets them up: ``0.NA/88.118.8`` grants its rights to the group
``200:0.NA/88.118.8``, an HS_VLIST naming ``300:88.118.8/ADMIN`` (HS_SECKEY) and
``300:88.118.8/KEYS`` (HS_PUBKEY, RSA); likewise ``88.118.9``; a server admin ``300:0.NA/88.118``.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from registry.authz import Identity
from registry.admin_cli import parse_value
from registry.identities import Authenticator, FailureLimiter
from registry.native_admin import LIST_PER_MESSAGE, NativeAdmin
from registry.service import Registry
from resolver.config import Config
from resolver.core.authority import AuthorityHandler
from resolver.core.engine import Resolver
from resolver.identifier import Identifier
from resolver.protocols.handle import auth as A
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    ChallengeBody, CreateHandleResponse, Envelope, HandleBody, HandleProtocolError,
    ListHandlesResponse, Message, RemoveValueRequest, ResolutionRequest, ResolutionResponse,
    ValuesBody,
)  # fmt: skip
from resolver.protocols.handle.tcp import FrameBuffer
from resolver.record import Record, pack, unpack
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.store import Change
from resolver.store.lmdb_store import LmdbStore
from resolver.upstream.client import ADMIN_FLAGS, PublicKeyAuth, SecretKeyAuth, prepare
from resolver.values import AdminRecord, HandleValue, encode_vlist

OP = C.OpCode
ALL = 0xFFF  # every right, LIST_HANDLES included
A8 = "300:88.118.8/ADMIN"
K8 = "300:88.118.8/KEYS"
A9 = "300:88.118.9/ADMIN"
ROOT = "300:0.NA/88.118"
PEER = "192.0.2.7"


def v(index, vtype, data, perms=0x0E) -> HandleValue:
    return HandleValue(index, vtype, data if isinstance(data, bytes) else data.encode(),
                       permissions=perms, timestamp=1)  # fmt: skip


def admin_value(handle: str, index: int, perms: int = ALL, at: int = 100) -> HandleValue:
    return v(at, "HS_ADMIN", AdminRecord(handle, index, perms).to_bytes())


def enterprise(prefix: str, secret: bytes, pubkey: bytes) -> list[Change]:
    group = encode_vlist([(f"{prefix}/ADMIN", 300), (f"{prefix}/KEYS", 300)])
    na = Record([admin_value(f"0.NA/{prefix}", 200), v(200, "HS_VLIST", group)])
    ident = Record([admin_value(f"0.NA/{prefix}", 200), v(300, "HS_SECKEY", secret, 0x0C)])
    keys = Record([admin_value(f"0.NA/{prefix}", 200), v(300, "HS_PUBKEY", pubkey)])
    return [Change(prefix.encode(), pack(na), prefix=True),
            Change(f"{prefix}/ADMIN".upper().encode(), pack(ident)),
            Change(f"{prefix}/KEYS".upper().encode(), pack(keys))]  # fmt: skip


@pytest.fixture(scope="module")
def rsa_key():
    return A.generate_rsa_key(2048)


@pytest.fixture
def store(tmp_path, rsa_key):
    s = LmdbStore(tmp_path / "s", map_size=64 << 20)
    pub = A.rsa_public_key_bytes(rsa_key)
    s.write(enterprise("88.118.8", b"secret-8", pub) + enterprise("88.118.9", b"secret-9", pub)
            + [Change(b"88.118", pack(Record([v(300, "HS_SECKEY", b"root", 0x0C)])),
                      prefix=True)])  # fmt: skip
    yield s
    s.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Node:
    """A front-end with an admin over ``store``; ``send`` plays one message to it."""

    def __init__(self, store, *, limiter=None, max_pending=1024, max_bytes=16 << 20) -> None:
        self.store = store
        self.clock = Clock()
        self.registry = Registry(store, server_admins=[Identity.parse(ROOT)])
        self.authn = Authenticator(store, limiter=limiter or FailureLimiter())
        self.admin = NativeAdmin(self.registry, self.authn, clock=self.clock,
                                 max_pending=max_pending, max_pending_bytes=max_bytes)  # fmt: skip
        self.fe = HandleFrontEnd(Resolver([AuthorityHandler(store)]), Config(), admin=self.admin)

    def send(self, wire: bytes, peer: str | None = PEER, stream: bool = True) -> list[Message]:
        out = asyncio.run(self.fe.answer(Envelope.from_wire(wire), wire[20:], peer,
                                         stream=stream))  # fmt: skip
        return [Message.from_wire(frame) for _env, frame in FrameBuffer().feed(out)]

    def one(self, wire: bytes, **kw) -> Message:
        [reply] = self.send(wire, **kw)
        return reply

    def challenged(self, opcode, body, flags=ADMIN_FLAGS, **prep):
        request = prepare(opcode, body, opflags=flags, **prep)
        reply = self.one(request.wire)
        assert reply.header.rc == 402, reply
        return request, reply

    def answer_for(self, request, challenge_reply, credentials, version=None):
        challenge = A.Challenge(challenge_reply.body.nonce, *challenge_reply.digest)
        assert A.challenge_is_for(challenge, request.digested)
        env = challenge_reply.envelope
        body = credentials.answer(challenge, version or min((env.major, env.minor),
                                                            env.suggested))  # fmt: skip
        return prepare(OP.CHALLENGE_RESPONSE, body, opflags=ADMIN_FLAGS,
                       session_id=env.session_id)  # fmt: skip

    def authed(self, opcode, body, credentials, flags=ADMIN_FLAGS, **kw) -> list[Message]:
        request, challenge = self.challenged(opcode, body, flags)
        return self.send(self.answer_for(request, challenge, credentials).wire, **kw)

    def last(self) -> int:
        return self.store.last_txn_id()

    def values(self, handle: str) -> dict[int, bytes] | None:
        blob = self.store.get_record(Identifier.parse(handle).key)
        return None if blob is None else {x.index: x.data for x in unpack(blob)}


@pytest.fixture
def node(store) -> Node:
    return Node(store)


@pytest.fixture
def sec8():
    return SecretKeyAuth(A8, b"secret-8")


@pytest.fixture
def key8(rsa_key):
    return PublicKeyAuth(K8, rsa_key)


def _create(handle: str, url: str = "https://a", admin: str = A8) -> ValuesBody:
    index, who = A.parse_identity(admin)
    return ValuesBody(handle.encode(), (v(1, "URL", url), admin_value(who, index)))


def _made(node: Node, sec8, handle: str = "88.118.8/SN-1") -> None:
    [r] = node.authed(OP.CREATE_HANDLE, _create(handle), sec8)
    assert r.header.rc == 1


def _log_after(store, txn_id: int):
    return list(store.changes_since(txn_id))


# -- the challenge -----------------------------------------------------------------------------


def test_an_unauthenticated_create_gets_a_challenge_and_writes_nothing(node):
    before = node.last()
    request = prepare(OP.CREATE_HANDLE, _create("88.118.8/SN-1"), opflags=0)
    reply = node.one(request.wire)
    assert reply.header.rc == 402 and reply.header.opcode == OP.CREATE_HANDLE
    assert reply.header.has(C.FLAG_REQUEST_DIGEST)  # set although the request did not ask
    assert reply.envelope.request_id == request.request_id
    assert reply.envelope.session_id != 0 and node.admin.pending == 1
    assert isinstance(reply.body, ChallengeBody) and len(reply.body.nonce) == A.NONCE_SIZE
    # the request suggested 2.11: the digest is SHA-256 of the request's header and body
    assert reply.digest == (C.HASH_SHA256, hashlib.sha256(request.digested).digest())
    assert node.last() == before and node.values("88.118.8/SN-1") is None


def test_each_challenge_has_its_own_session_and_nonce(node):
    a = node.challenged(OP.DELETE_HANDLE, HandleBody(b"88.118.8/X"))[1]
    b = node.challenged(OP.DELETE_HANDLE, HandleBody(b"88.118.8/X"))[1]
    assert a.envelope.session_id != b.envelope.session_id
    assert a.body.nonce != b.body.nonce


# -- create, modify, delete with both key types ------------------------------------------------


@pytest.mark.parametrize("who", ["sec8", "key8"])
def test_create_modify_delete_with_each_key_type(node, request, who):
    cred = request.getfixturevalue(who)
    start = node.last()
    [r] = node.authed(OP.CREATE_HANDLE, _create("88.118.8/SN-1", admin=cred.identity), cred)
    assert r.header.rc == 1 and r.header.opcode == OP.CREATE_HANDLE
    assert CreateHandleResponse.from_wire(r.body.to_wire()).handle == b"88.118.8/SN-1"
    [r] = node.authed(OP.MODIFY_VALUE, ValuesBody(b"88.118.8/sn-1", (v(1, "URL", "https://b"),)),
                      cred)  # fmt: skip
    assert r.header.rc == 1 and node.values("88.118.8/SN-1")[1] == b"https://b"
    [r] = node.authed(OP.DELETE_HANDLE, HandleBody(b"88.118.8/SN-1"), cred)
    assert r.header.rc == 1 and node.values("88.118.8/SN-1") is None
    log = _log_after(node.store, start)
    assert [(c.op, c.identity) for c in log] == [(OP.CREATE_HANDLE, cred.identity),
                                                 (OP.MODIFY_VALUE, cred.identity),
                                                 (OP.DELETE_HANDLE, cred.identity)]  # fmt: skip


def test_the_final_reply_answers_the_original_request(node, sec8):
    request, challenge = node.challenged(OP.CREATE_HANDLE, _create("88.118.8/SN-1"))
    answer = node.answer_for(request, challenge, sec8)
    [r] = node.send(answer.wire)
    assert r.envelope.request_id == answer.request_id
    assert r.envelope.session_id == challenge.envelope.session_id
    assert r.digest == (C.HASH_SHA256, hashlib.sha256(request.digested).digest())


def test_legacy_sha1_answer_at_version_2_5(node, sec8):
    # a 2.5 client: the challenge digest is SHA-1 and the answer 0x02 + SHA-1(s|n|d|s)
    request, challenge = node.challenged(OP.CREATE_HANDLE, _create("88.118.8/OLD"),
                                         version=(2, 5), suggest=(2, 5))  # fmt: skip
    assert challenge.digest[0] == C.HASH_SHA1
    answer = node.answer_for(request, challenge, sec8)
    assert Message.from_wire(answer.wire).body.answer[0] == A.CODE_SHA1
    assert node.one(answer.wire).header.rc == 1
    assert node.values("88.118.8/OLD")[1] == b"https://a"


def test_index_zero_identity_acts_as_the_key_index_that_verified(node):
    start = node.last()
    [r] = node.authed(OP.CREATE_HANDLE, _create("88.118.8/Z"),
                      SecretKeyAuth("88.118.8/ADMIN", b"secret-8"))  # fmt: skip
    assert r.header.rc == 1
    assert [c.identity for c in _log_after(node.store, start)] == [A8]


def test_add_value_respects_the_overwrite_flag(node, sec8):
    _made(node, sec8)
    before = node.last()
    body = ValuesBody(b"88.118.8/SN-1", (v(1, "URL", "https://c"), v(2, "EMAIL", "x@y")))
    [r] = node.authed(OP.ADD_VALUE, body, sec8)
    assert r.header.rc == 201 and node.last() == before
    [r] = node.authed(OP.ADD_VALUE, body, sec8, flags=ADMIN_FLAGS | C.FLAG_OVERWRITE)
    assert r.header.rc == 1
    assert node.values("88.118.8/SN-1")[1] == b"https://c"
    assert node.values("88.118.8/SN-1")[2] == b"x@y"


def test_modify_of_a_missing_index_is_values_not_found(node, sec8):
    _made(node, sec8)
    before = node.last()
    [r] = node.authed(OP.MODIFY_VALUE, ValuesBody(b"88.118.8/SN-1", (v(7, "URL", "x"),)), sec8)
    assert r.header.rc == 200 and node.last() == before


def test_modify_of_a_read_only_value_is_401(node, sec8):
    values = (v(1, "URL", "https://fixed", 0x0A), admin_value("88.118.8/ADMIN", 300))
    assert node.authed(OP.CREATE_HANDLE, ValuesBody(b"88.118.8/RO", values),
                       sec8)[0].header.rc == 1  # fmt: skip
    before = node.last()
    [r] = node.authed(OP.MODIFY_VALUE, ValuesBody(b"88.118.8/RO", (v(1, "URL", "x"),)), sec8)
    assert r.header.rc == 401 and node.last() == before


def test_remove_values(node, sec8):
    _made(node, sec8)
    before = node.last()
    [r] = node.authed(OP.REMOVE_VALUE, RemoveValueRequest(b"88.118.8/SN-1", (9,)), sec8)
    assert r.header.rc == 200 and node.last() == before
    [r] = node.authed(OP.REMOVE_VALUE, RemoveValueRequest(b"88.118.8/SN-1", (1,)), sec8)
    assert r.header.rc == 1 and set(node.values("88.118.8/SN-1")) == {100}
    assert _log_after(node.store, before)[-1].op == OP.REMOVE_VALUE


def test_existing_handle_without_overwrite_is_101(node, sec8):
    _made(node, sec8)
    before = node.last()
    [r] = node.authed(OP.CREATE_HANDLE, _create("88.118.8/sn-1", "https://new"), sec8)
    assert r.header.rc == 101 and node.last() == before


def test_mint_flag_creates_a_new_suffix(node, sec8):
    [r] = node.authed(OP.CREATE_HANDLE, _create("88.118.8/"), sec8,
                      flags=ADMIN_FLAGS | C.FLAG_MINT)  # fmt: skip
    made = CreateHandleResponse.from_wire(r.body.to_wire()).handle.decode()
    assert r.header.rc == 1 and made.startswith("88.118.8/") and len(made) > len("88.118.8/")
    assert node.values(made)[1] == b"https://a"


# -- refusals -------------------------------------------------------------------------------------


def test_wrong_secret_is_403_and_counted(node):
    before = node.last()
    [r] = node.authed(OP.CREATE_HANDLE, _create("88.118.8/SN-1"), SecretKeyAuth(A8, b"nope"))
    assert r.header.rc == 403 and r.header.opcode == OP.CREATE_HANDLE
    assert node.last() == before and node.values("88.118.8/SN-1") is None
    assert len(node.authn.limiter._recent(PEER)) == 1


def test_a_signature_by_another_rsa_key_is_403(node):
    other = PublicKeyAuth(K8, A.generate_rsa_key(1024))
    before = node.last()
    [r] = node.authed(OP.CREATE_HANDLE, _create("88.118.8/SN-1"), other)
    assert r.header.rc == 403 and node.last() == before


def test_a_replayed_answer_fails(node, sec8):
    request, challenge = node.challenged(OP.CREATE_HANDLE, _create("88.118.8/SN-1"))
    answer = node.answer_for(request, challenge, sec8)
    assert node.one(answer.wire).header.rc == 1
    node.one(prepare(OP.DELETE_HANDLE, HandleBody(b"88.118.8/SN-1")).wire)  # unrelated traffic
    after = node.last()
    [again] = node.send(answer.wire)
    assert again.header.rc == 403 and again.header.opcode == OP.CHALLENGE_RESPONSE
    assert node.last() == after


def test_an_expired_challenge_fails(node, sec8):
    request, challenge = node.challenged(OP.CREATE_HANDLE, _create("88.118.8/SN-1"))
    node.clock.now += 60.5
    before = node.last()
    assert node.one(node.answer_for(request, challenge, sec8).wire).header.rc == 403
    assert node.last() == before and node.admin.pending == 0


def test_an_answer_for_an_unknown_session_fails(node, sec8):
    request, challenge = node.challenged(OP.CREATE_HANDLE, _create("88.118.8/SN-1"))
    forged = Message.from_wire(node.answer_for(request, challenge, sec8).wire)
    wire = prepare(OP.CHALLENGE_RESPONSE, forged.body, opflags=ADMIN_FLAGS,
                   session_id=(challenge.envelope.session_id % 0x7FFFFFFF) + 1).wire  # fmt: skip
    assert node.one(wire).header.rc == 403 and node.values("88.118.8/SN-1") is None


def test_an_answer_from_another_client_fails_and_leaves_the_challenge(node, sec8):
    request, challenge = node.challenged(OP.CREATE_HANDLE, _create("88.118.8/SN-1"))
    answer = node.answer_for(request, challenge, sec8)
    assert node.one(answer.wire, peer="198.51.100.9").header.rc == 403
    assert node.values("88.118.8/SN-1") is None
    assert node.one(answer.wire).header.rc == 1  # the right client still can


def test_too_many_failures_is_rc_3_even_with_the_right_secret(store, sec8):
    node = Node(store, limiter=FailureLimiter(limit=2))
    for _ in range(2):
        assert node.authed(OP.DELETE_HANDLE, HandleBody(b"88.118.8/ADMIN"),
                           SecretKeyAuth(A8, b"bad"))[0].header.rc == 403  # fmt: skip
    before = node.last()
    [r] = node.authed(OP.CREATE_HANDLE, _create("88.118.8/SN-1"), sec8)
    assert r.header.rc == 3 and node.last() == before


@pytest.mark.parametrize("handle", ["88.118.8/SN-9", "0.NA/88.118.8"])
def test_another_enterprise_is_refused(node, handle):
    sec9 = SecretKeyAuth(A9, b"secret-9")
    before = node.last()
    [r] = node.authed(OP.CREATE_HANDLE, _create(handle, admin=A9), sec9,
                      flags=ADMIN_FLAGS | C.FLAG_OVERWRITE)  # fmt: skip
    assert r.header.rc == 401 and node.last() == before


def test_cheap_refusals_come_before_any_challenge(node):
    cases = [(OP.CREATE_HANDLE, _create("77.1/X"), 301),
             (OP.DELETE_HANDLE, HandleBody(b"88.118.8/\xff"), 102),
             (OP.ADD_VALUE, ValuesBody(b"88.118.8/SN-1", ()), 202),
             (OP.LIST_HANDLES, HandleBody(b"0.NA/77.1"), 301),
             (OP.HOME_NA, HandleBody(b"88.118.8/SN-1"), 102)]  # fmt: skip
    for opcode, body, rc in cases:
        assert node.one(prepare(opcode, body, opflags=ADMIN_FLAGS).wire).header.rc == rc
    assert node.admin.pending == 0


def test_pending_challenges_are_bounded(store, sec8):
    node = Node(store, max_pending=2)
    first = node.challenged(OP.CREATE_HANDLE, _create("88.118.8/A"))
    node.challenged(OP.CREATE_HANDLE, _create("88.118.8/B"))
    node.challenged(OP.CREATE_HANDLE, _create("88.118.8/C"))
    assert node.admin.pending == 2
    assert node.one(node.answer_for(*first, sec8).wire).header.rc == 403  # the oldest went


def test_pending_request_bytes_are_bounded(store, sec8):
    big = ValuesBody(b"88.118.8/BIG", (v(1, "URL", "x" * 3000),))
    node = Node(store, max_bytes=7000)  # two such requests fit, not three
    first = node.challenged(OP.CREATE_HANDLE, big)
    node.challenged(OP.CREATE_HANDLE, big)
    node.challenged(OP.CREATE_HANDLE, big)
    assert node.admin.pending == 2
    assert node.one(node.answer_for(*first, sec8).wire).header.rc == 403


def test_without_an_admin_the_admin_op_codes_are_not_supported(store):
    fe = HandleFrontEnd(Resolver([AuthorityHandler(store)]), Config())
    wire = prepare(OP.CREATE_HANDLE, _create("88.118.8/SN-1")).wire
    out = asyncio.run(fe.answer(Envelope.from_wire(wire), wire[20:]))
    assert Message.from_wire(out).header.rc == 5


# -- the authenticated read ------------------------------------------------------------------------


@pytest.fixture
def secret_record(node, sec8):
    values = (v(1, "URL", "https://pub"), v(2, "NOTE", "admin-only", 0x0C),
              admin_value("0.NA/88.118.8", 200))  # fmt: skip
    assert node.authed(OP.CREATE_HANDLE, ValuesBody(b"88.118.8/S", values),
                       sec8)[0].header.rc == 1  # fmt: skip
    return b"88.118.8/S"


def test_public_only_resolution_needs_no_authentication(node, secret_record):
    r = node.one(prepare(OP.RESOLUTION, ResolutionRequest(secret_record)).wire)
    assert r.header.rc == 1 and [x.index for x in r.body.values] == [1, 100]


def test_restricted_read_is_challenged_then_served_to_a_reader(node, secret_record, sec8, key8):
    request = prepare(OP.RESOLUTION, ResolutionRequest(secret_record), opflags=0)
    assert node.one(request.wire).header.rc == 402
    for cred in (sec8, key8):
        [r] = node.authed(OP.RESOLUTION, ResolutionRequest(secret_record), cred, flags=0)
        assert r.header.rc == 1 and isinstance(r.body, ResolutionResponse)
        assert {x.index: x.data for x in r.body.values}[2] == b"admin-only"


def test_a_filter_without_restricted_values_needs_no_authentication(node, secret_record):
    r = node.one(prepare(OP.RESOLUTION, ResolutionRequest(secret_record, (1,)), opflags=0).wire)
    assert r.header.rc == 1 and [x.index for x in r.body.values] == [1]


def test_restricted_read_without_read_value_is_401(node, secret_record):
    [r] = node.authed(OP.RESOLUTION, ResolutionRequest(secret_record),
                      SecretKeyAuth(A9, b"secret-9"), flags=0)  # fmt: skip
    assert r.header.rc == 401 and r.header.opcode == OP.RESOLUTION


# -- lists and prefixes ----------------------------------------------------------------------------


def test_list_handles_streams_in_parts_of_fifty(node, sec8):
    node.store.write([Change(f"88.118.8/L{i:03}".encode(), pack(Record([v(1, "URL", "u")])))
                      for i in range(LIST_PER_MESSAGE + 7)])  # fmt: skip
    parts = node.authed(OP.LIST_HANDLES, HandleBody(b"0.NA/88.118.8"), sec8)
    assert [p.header.has(C.FLAG_CONTINUOUS) for p in parts] == [True, False]
    names = [h for p in parts for h in ListHandlesResponse.from_wire(p.body.to_wire()).handles]
    assert len(names) == LIST_PER_MESSAGE + 9 and b"88.118.8/L056" in names  # + ADMIN, KEYS
    [one] = node.authed(OP.LIST_HANDLES, HandleBody(b"88.118.8"), sec8, stream=False)
    assert ListHandlesResponse.from_wire(one.body.to_wire()).handles == tuple(names)


def test_list_handles_of_another_prefix_is_401(node):
    [r] = node.authed(OP.LIST_HANDLES, HandleBody(b"0.NA/88.118.8"), SecretKeyAuth(A9, b"secret-9"))
    assert r.header.rc == 401


def test_server_admin_homes_lists_and_unhomes_a_prefix(node):
    root = SecretKeyAuth(ROOT, b"root")
    start = node.last()
    assert node.authed(OP.HOME_NA, HandleBody(b"0.NA/88.118.77"), root)[0].header.rc == 1
    assert node.store.get_prefix(b"88.118.77") is not None
    [r] = node.authed(OP.LIST_HOMED_NAS, HandleBody(b""), root)
    homed = ListHandlesResponse.from_wire(r.body.to_wire()).handles
    assert b"0.NA/88.118.77" in homed and b"0.NA/88.118.8" in homed
    assert node.authed(OP.UNHOME_NA, HandleBody(b"88.118.77"), root)[0].header.rc == 1
    assert node.store.get_prefix(b"88.118.77") is None
    log = _log_after(node.store, start)
    assert [(c.op, c.identity) for c in log] == [(OP.HOME_NA, ROOT), (OP.UNHOME_NA, ROOT)]


def test_a_prefix_admin_cannot_home_unhome_or_list_prefixes(node, sec8):
    before = node.last()
    assert node.authed(OP.HOME_NA, HandleBody(b"88.118.77"), sec8)[0].header.rc == 401
    assert node.authed(OP.UNHOME_NA, HandleBody(b"88.118.8"), sec8)[0].header.rc == 401
    assert node.authed(OP.LIST_HOMED_NAS, HandleBody(b""), sec8)[0].header.rc == 401
    assert node.last() == before and node.store.get_prefix(b"88.118.8") is not None


# -- bodies and the command line -------------------------------------------------------------------


def test_new_bodies_round_trip_and_refuse_trailing_bytes():
    for body in (CreateHandleResponse(b"88.118.8/x"), CreateHandleResponse(None),
                 ListHandlesResponse(()), ListHandlesResponse((b"a/1", b"a/2"))):  # fmt: skip
        assert type(body).from_wire(body.to_wire()) == body
    with pytest.raises(HandleProtocolError):
        ListHandlesResponse.from_wire(ListHandlesResponse((b"a",)).to_wire() + b"\0")
    with pytest.raises(HandleProtocolError):
        CreateHandleResponse.from_wire(b"\0\0\0\x09ab")


def test_cli_value_syntax():
    assert parse_value("1:URL:https://x/y:z") == HandleValue(1, "URL", b"https://x/y:z")
    admin = parse_value("100:HS_ADMIN:300:88.118.8/ADMIN#0ff2")
    assert AdminRecord.from_bytes(admin.data) == AdminRecord("88.118.8/ADMIN", 300, 0xFF2)
    for bad in ("URL:x", "0:URL:x", "1::x", "x:URL:y", "100:HS_ADMIN:88.118.8/ADMIN"):
        with pytest.raises(ValueError):
            parse_value(bad)


def test_admin_lifetime_is_bounded(store):
    with pytest.raises(ValueError):
        NativeAdmin(Registry(store), Authenticator(store), lifetime=61)
