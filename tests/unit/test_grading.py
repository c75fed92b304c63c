"""Data grading on read (``resolver.core.grading``): the truth table of the one rule, the
general-path selection built on it, and every front-end that reads through it —
``Registry.read`` (the authenticated REST read) for anonymous callers, READ_VALUE holders,
owners over TLS and not, and the authenticated native resolution (``NativeAdmin``), over a
real LMDB store.

The instance ``88.118.8/G-1`` uses the template ``88.118.8/battery/1`` whose fields are general
(2000 serial, 2001 capacity, 2003 manual), important (2002 made) and core (2004 chemistry).
Its HS_ADMIN at 100 names the enterprise admin group of 88.118.8 with every right; the one at
101 grants ``300:88.118.9/ADMIN`` READ_VALUE only (a reader, not an owner).
"""

from __future__ import annotations

import asyncio

import pytest

from registry.authz import Identity
from registry.identities import Authenticator
from registry.native_admin import NativeAdmin
from registry.service import OPERATOR, Registry
from registry.templates import template_value
from resolver.config import Config
from resolver.core.authority import AuthorityHandler
from resolver.core.engine import Resolver
from resolver.core.grading import (
    ANONYMOUS, Grade, Reader, effective_grade, filter_values, permissions_for, visible,
)  # fmt: skip
from resolver.core.request import ResolveRequest
from resolver.core.select import select
from resolver.errors import Outcome
from resolver.identifier import Identifier
from resolver.protocols.handle import auth as A
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import Envelope, Message, ResolutionRequest
from resolver.protocols.handle.tcp import FrameBuffer
from resolver.record import Record, pack
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.store import Change
from resolver.upstream.client import ADMIN_FLAGS, SecretKeyAuth, prepare
from resolver.values import AdminRecord, HandleValue, encode_vlist

G, I, K = Grade.GENERAL, Grade.IMPORTANT, Grade.CORE
A8 = Identity.parse("300:88.118.8/ADMIN")
A9 = Identity.parse("300:88.118.9/ADMIN")
ROOT = Identity.parse("300:0.NA/88.118")
HANDLE = "88.118.8/G-1"
GENERAL = {1, 100, 101, 1001, 2000, 2001, 2003}  # indexes of the general values of G-1
TEMPLATE = {"name": "battery", "fields": [
    {"name": "serial", "type": "char"}, {"name": "capacity", "type": "numeric", "scale": 1},
    {"name": "made", "type": "date", "grade": "important"}, {"name": "manual", "type": "url"},
    {"name": "chemistry", "type": "enum", "values": ["LFP", "NMC"], "grade": "core"}]}  # fmt: skip


def v(index, vtype, data, perms=0x0E) -> HandleValue:
    return HandleValue(index, vtype, data if isinstance(data, bytes) else data.encode(),
                       permissions=perms, timestamp=1)  # fmt: skip


# -- the rule --------------------------------------------------------------------------------------

READERS = {
    "anonymous": ANONYMOUS,
    "authenticated": Reader(authenticated=True),
    "reader": Reader(authenticated=True, may_read=True),
    "reader/tls": Reader(authenticated=True, may_read=True, tls=True),
    "owner": Reader(authenticated=True, may_read=True, owner=True),
    "owner/tls": Reader(authenticated=True, may_read=True, owner=True, tls=True),
    "owner/tls/udp": Reader(authenticated=True, may_read=True, owner=True, tls=True,
                            datagram=True),
    "owner-no-read/tls": Reader(authenticated=True, owner=True, tls=True),
    "unauthenticated-flags": Reader(may_read=True, owner=True, tls=True),
}  # fmt: skip

#: reader → (sees GENERAL, sees IMPORTANT, sees CORE)
TRUTH = {
    "anonymous": (True, False, False),
    "authenticated": (True, False, False),
    "reader": (True, True, False),
    "reader/tls": (True, True, False),
    "owner": (True, True, False),
    "owner/tls": (True, True, True),
    "owner/tls/udp": (True, True, False),
    "owner-no-read/tls": (True, False, False),
    "unauthenticated-flags": (True, False, False),
}


@pytest.mark.parametrize("who", list(TRUTH))
def test_truth_table(who):
    assert tuple(visible(g, READERS[who]) for g in (G, I, K)) == TRUTH[who]


def test_the_rule_is_monotone():
    import itertools

    for flags in itertools.product((False, True), repeat=5):
        reader = Reader(*flags)
        seen = [visible(g, reader) for g in (G, I, K)]
        assert seen == sorted(seen, reverse=True), reader  # never a higher grade alone


@pytest.mark.parametrize("perms,template,grade", [
    (0x0E, None, G), (0x0C, None, I), (0x0E, I, I), (0x0E, K, K), (0x0C, G, I), (0x0C, K, K),
])  # fmt: skip
def test_effective_grade(perms, template, grade):
    grades = {} if template is None else {7: template}
    assert effective_grade(v(7, "X", "x", perms), grades) is grade


def test_grade_names():
    assert [Grade.parse(t) for t in ("general", "IMPORTANT", "Core")] == [G, I, K]
    for bad in ("secret", "", "ＣＯＲＥ", None):
        with pytest.raises(ValueError):
            Grade.parse(bad)
    assert K.label == "core"


@pytest.mark.parametrize("perms", range(16))
def test_permissions_for_grades(perms):
    assert permissions_for(G, perms) == perms
    for grade in (I, K):
        out = permissions_for(grade, perms)
        assert out & 0x03 == 0 and out & 0x0C == 0x0C  # no public read/write; admin read/write


def test_filter_values_keeps_order():
    values = [v(1, "A", "a"), v(2, "B", "b"), v(3, "C", "c", 0x0C), v(4, "D", "d")]
    grades = {2: K, 4: I}
    assert [x.index for x in filter_values(values, grades, ANONYMOUS)] == [1]
    assert [x.index for x in filter_values(values, grades, READERS["reader"])] == [1, 3, 4]
    assert [x.index for x in filter_values(values, grades, READERS["owner/tls"])] == [1, 2, 3, 4]


# -- the general-path selection ------------------------------------------------------------------


def _request(**kw) -> ResolveRequest:
    return ResolveRequest(Identifier.parse("88.118.8/x"), **kw)


VALUES = (v(1, "URL", "u"), v(2, "SECRET", "s", 0x0C), v(3, "CORE", "c"))


def test_select_without_grades_behaves_as_before():
    assert select(VALUES, _request()).values == (VALUES[0], VALUES[2])
    assert select(VALUES, _request(public_only=False)).outcome is Outcome.AUTH_NEEDED
    assert select(VALUES, _request(public_only=False, indexes=(1,))).values == (VALUES[0],)
    assert select(VALUES, _request(public_only=False, authenticated=True)).values == VALUES
    assert select(VALUES, _request(indexes=(2,))).outcome is Outcome.VALUES_NOT_FOUND


def test_select_with_grades():
    grades = {3: K}
    assert select(VALUES, _request(), grades).values == (VALUES[0],)
    assert select(VALUES, _request(public_only=False, indexes=(3,)),
                  grades).outcome is Outcome.AUTH_NEEDED  # fmt: skip
    reader = READERS["reader"]
    got = select(VALUES, _request(public_only=False), grades, reader)
    assert got.outcome is Outcome.OK and got.values == VALUES[:2]  # core withheld
    only_core = select(VALUES, _request(public_only=False, indexes=(3,)), grades, reader)
    assert only_core.outcome is Outcome.FORBIDDEN and "core" in only_core.message
    assert select(VALUES, _request(public_only=False), grades,
                  READERS["owner/tls"]).values == VALUES  # fmt: skip


# -- Registry.read and the native read over a store ------------------------------------------------


def _admin(handle: str, index: int, perms: int, at: int = 100) -> HandleValue:
    return v(at, "HS_ADMIN", AdminRecord(handle, index, perms).to_bytes())


def _enterprise(prefix: str, secret: bytes) -> list[Change]:
    na = Record([_admin(f"0.NA/{prefix}", 200, 0x7FF),
                 v(200, "HS_VLIST", encode_vlist([(f"{prefix}/ADMIN", 300)]))])  # fmt: skip
    ident = Record([_admin(f"0.NA/{prefix}", 200, 0x7FF), v(300, "HS_SECKEY", secret, 0x0C)])
    return [Change(prefix.encode(), pack(na), prefix=True),
            Change(f"{prefix}/ADMIN".upper().encode(), pack(ident))]  # fmt: skip


def _instance(ref: str = "88.118.8/battery/1") -> list[HandleValue]:
    return [v(1, "URL", "https://example.com/p"), _admin("0.NA/88.118.8", 200, 0xFFF),
            _admin("88.118.9/ADMIN", 300, 0x400, at=101), template_value(ref),
            v(2000, "serial", "SN-1"), v(2001, "capacity", "12.5"), v(2002, "made", "2026-03-01"),
            v(2003, "manual", "https://example.com/m"), v(2004, "chemistry", "LFP")]  # fmt: skip


@pytest.fixture
def reg(store) -> Registry:
    store.write(_enterprise("88.118.8", b"secret-8") + _enterprise("88.118.9", b"secret-9")
                + [Change(b"88.118", pack(Record([v(300, "HS_SECKEY", b"root", 0x0C)])),
                          prefix=True)])  # fmt: skip
    registry = Registry(store, server_admins=[ROOT])
    t = registry.templates.define(A8, "88.118.8", TEMPLATE)
    registry.templates.publish(A8, "88.118.8", "battery", t.version)
    registry.create_handle(A8, HANDLE, _instance())
    return registry


def _indexes(record) -> set[int]:
    return {x.index for x in record}


@pytest.mark.parametrize("who,tls,extra", [
    (None, False, set()), (None, True, set()),
    (A9, False, {2002}), (A9, True, {2002}),         # READ_VALUE only: a reader, not an owner
    (A8, False, {2002}), (A8, True, {2002, 2004}),   # the owner: core only over TLS
    (ROOT, True, {2002}),                            # server admin: may read, owns nothing
    (Identity.parse("300:88.118.9/NOBODY"), True, set()),
])  # fmt: skip
def test_registry_read(reg, who, tls, extra):
    assert _indexes(reg.read(who, HANDLE, tls=tls)) == GENERAL | extra


def test_the_operator_reads_everything(reg):
    assert _indexes(reg.read(OPERATOR, HANDLE)) == GENERAL | {2002, 2004}


def test_an_owner_through_the_prefix_alone_sees_no_restricted_values(reg):
    values = [x for x in _instance() if x.index not in (100, 101)]
    values.append(_admin("88.118.8/OTHER", 300, 0xFFF))  # the handle administered by another
    reg.create_handle(A8, "88.118.8/G-2", values)
    with reg.store.view() as view:
        record = Record(values)
        reader = reg.reader(view, A8, Identifier.parse("88.118.8/G-2"), record, tls=True)
    assert reader.owner and not reader.may_read
    assert _indexes(reg.read(A8, "88.118.8/G-2", tls=True)) == {1, 100, 1001, 2000, 2001, 2003}


def test_grades_apply_to_records_written_around_the_registry(reg, store):
    """``idnode load`` does not run templates: a core field stored with public read is still
    withheld from every reader but the owner over TLS."""
    loaded = [x.replace(permissions=0x0E) for x in _instance()]
    store.write([Change(Identifier.parse("88.118.8/G-3").key, pack(Record(loaded)))])
    assert _indexes(reg.read(None, "88.118.8/G-3")) == GENERAL
    assert _indexes(reg.read(A9, "88.118.8/G-3", tls=True)) == GENERAL | {2002}
    assert _indexes(reg.read(A8, "88.118.8/G-3", tls=True)) == GENERAL | {2002, 2004}


class _Native:
    """A Handle front-end with the native admin over the registry's store."""

    def __init__(self, reg: Registry) -> None:
        self.admin = NativeAdmin(reg, Authenticator(reg.store))
        self.fe = HandleFrontEnd(Resolver([AuthorityHandler(reg.store)]), Config(),
                                 admin=self.admin)  # fmt: skip

    def send(self, wire: bytes, stream: bool = True) -> Message:
        out = asyncio.run(self.fe.answer(Envelope.from_wire(wire), wire[20:], "192.0.2.7",
                                         stream=stream))  # fmt: skip
        [(_env, frame)] = FrameBuffer().feed(out)
        return Message.from_wire(frame)

    def read(self, cred: SecretKeyAuth, indexes=(), stream: bool = True) -> Message:
        body = ResolutionRequest(HANDLE.encode(), tuple(indexes))
        request = prepare(C.OpCode.RESOLUTION, body, opflags=0)
        challenge = self.send(request.wire, stream)
        assert challenge.header.rc == 402
        env = challenge.envelope
        ch = A.Challenge(challenge.body.nonce, *challenge.digest)
        answer = cred.answer(ch, min((env.major, env.minor), env.suggested))
        return self.send(prepare(C.OpCode.CHALLENGE_RESPONSE, answer, opflags=ADMIN_FLAGS,
                                 session_id=env.session_id).wire, stream)  # fmt: skip


SEC8 = SecretKeyAuth(str(A8), b"secret-8")
SEC9 = SecretKeyAuth(str(A9), b"secret-9")


def test_native_anonymous_resolution_is_general_only(reg):
    r = _Native(reg).send(prepare(C.OpCode.RESOLUTION, ResolutionRequest(HANDLE.encode())).wire)
    assert r.header.rc == 1 and {x.index for x in r.body.values} == GENERAL


@pytest.mark.parametrize("stream", [True, False], ids=["tcp", "udp"])
def test_native_authenticated_read_never_serves_core(reg, stream):
    native = _Native(reg)
    for cred in (SEC8, SEC9):  # the owner and a READ_VALUE reader alike
        r = native.read(cred, stream=stream)
        assert r.header.rc == 1 and {x.index for x in r.body.values} == GENERAL | {2002}
    r = native.read(SEC8, indexes=(2004,), stream=stream)
    assert r.header.rc == 401 and b"core" in r.body.message


def test_native_read_without_read_value_is_refused(reg):
    reg.create_handle(A8, "88.118.8/G-4", [x for x in _instance() if x.index != 101])
    native = _Native(reg)
    body = ResolutionRequest(b"88.118.8/G-4")
    request = prepare(C.OpCode.RESOLUTION, body, opflags=0)
    challenge = native.send(request.wire)
    env = challenge.envelope
    answer = SEC9.answer(A.Challenge(challenge.body.nonce, *challenge.digest),
                         min((env.major, env.minor), env.suggested))  # fmt: skip
    r = native.send(prepare(C.OpCode.CHALLENGE_RESPONSE, answer, opflags=ADMIN_FLAGS,
                            session_id=env.session_id).wire)  # fmt: skip
    assert r.header.rc == 401 and b"READ_VALUE" in r.body.message
