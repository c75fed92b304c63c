"""The registration service, authentication and session tokens over a real LMDB store.

Two enterprises as Handle.net sets them up: ``0.NA/88.118.8`` grants its rights to the group
``200:0.NA/88.118.8`` (an HS_VLIST naming ``300:88.118.8/ADMIN``), likewise for 88.118.9; a
server admin ``300:0.NA/88.118``.  Every refusal also asserts that nothing was written.
"""

from __future__ import annotations

import pytest

from registry.authz import Identity
from registry.identities import Authenticator, FailureLimiter
from registry.service import OPERATOR, Registry
from registry.sessions import SessionTokens
from resolver.errors import (
    AlreadyExists, AuthenticationFailed, AuthenticationNeeded, Forbidden, HandleNotFound,
    InvalidIdentifier, MalformedRequest, NoSuchValue, NotResponsible, StoreFull, TooManyAttempts,
    ValueExists,
)  # fmt: skip
from resolver.identifier import Identifier
from resolver.protocols.handle.constants import OpCode
from resolver.record import Record, pack
from resolver.store import Change
from resolver.store import schema as S
from resolver.store.lmdb_store import LmdbStore
from resolver.values import AdminRecord, HandleValue
from tests.enterprises import enterprise_changes

T0 = 1_800_000_000
ALL = 0x7FF
A8 = Identity.parse("300:88.118.8/ADMIN")
A9 = Identity.parse("300:88.118.9/ADMIN")
ROOT = Identity.parse("300:0.NA/88.118")


def v(index, vtype, data, perms=0x0E) -> HandleValue:
    return HandleValue(index, vtype, data if isinstance(data, bytes) else data.encode(),
                       permissions=perms, timestamp=1)  # fmt: skip


def admin_value(handle: str, index: int, perms: int = ALL) -> HandleValue:
    return v(100, "HS_ADMIN", AdminRecord(handle, index, perms).to_bytes())


@pytest.fixture
def store(tmp_path):
    s = LmdbStore(tmp_path / "s", map_size=64 << 20)
    s.write(enterprise_changes("88.118.8", b"secret-8") + enterprise_changes("88.118.9", b"secret-9")
            + [Change(b"88.118", pack(Record([v(300, "HS_SECKEY", b"root", 0x0C)])),
                      prefix=True)])  # fmt: skip
    yield s
    s.close()


@pytest.fixture
def reg(store) -> Registry:
    return Registry(store, server_admins=[ROOT], clock=lambda: T0)


def _urls(reg, handle, who=A8):
    rec = reg.read(who, handle)
    return None if rec is None else [x.data for x in rec if x.type == "URL"]


def _unchanged(store, before: int) -> bool:
    return store.last_txn_id() == before


# -- create -------------------------------------------------------------------------------------


def test_create_by_the_prefix_admin_group(reg, store):
    res = reg.create_handle(A8, "88.118.8/SN-1", [v(1, "URL", "https://a")])
    assert res.created and res.handle == "88.118.8/SN-1" and res.txn_id == store.last_txn_id()
    assert _urls(reg, "88.118.8/sn-1") == [b"https://a"]
    assert [x.timestamp for x in reg.read(A8, "88.118.8/SN-1")] == [T0]  # server-side stamps
    last = list(store.changes_since(res.txn_id - 1))[-1]
    assert (last.identity, last.op, last.action) == ("300:88.118.8/ADMIN",
                                                     OpCode.CREATE_HANDLE, S.ACTION_CREATE)


@pytest.mark.parametrize("handle", ["88.118.9/SN-1", "88.118.88/SN-1", "88.118/SN-1",
                                    "88.1188/SN-1", "0.NA/88.118.9.1"])  # fmt: skip
def test_create_outside_the_own_prefix_is_refused(reg, store, handle):
    before = store.last_txn_id()
    with pytest.raises((Forbidden, NotResponsible)):
        reg.create_handle(A8, handle, [v(1, "URL", "https://evil")])
    assert _unchanged(store, before)


def test_create_unauthenticated_needs_authentication(reg, store):
    before = store.last_txn_id()
    with pytest.raises(AuthenticationNeeded):
        reg.create_handle(None, "88.118.8/SN-2", [v(1, "URL", "https://a")])
    assert _unchanged(store, before)


def test_existing_handle_needs_overwrite(reg, store):
    reg.create_handle(A8, "88.118.8/SN-3", [v(1, "URL", "https://a"),
                                            admin_value("0.NA/88.118.8", 200)])  # fmt: skip
    before = store.last_txn_id()
    with pytest.raises(AlreadyExists):
        reg.create_handle(A8, "88.118.8/sn-3", [v(1, "URL", "https://b")])
    assert _unchanged(store, before)
    new = [v(1, "URL", "https://b"), admin_value("0.NA/88.118.8", 200)]
    assert not reg.create_handle(A8, "88.118.8/SN-3", new, overwrite=True).created
    assert _urls(reg, "88.118.8/SN-3") == [b"https://b"]


def test_a_prefix_admin_cannot_take_over_a_handle_by_overwriting_it(reg, store):
    theirs = [v(1, "URL", "https://a"), admin_value("88.118.8/OTHER", 300)]
    reg.create_handle(A8, "88.118.8/TAKEN", theirs)  # made for someone else
    before = store.last_txn_id()
    with pytest.raises(Forbidden):
        reg.create_handle(A8, "88.118.8/TAKEN", [v(1, "URL", "https://mine"),
                                                 admin_value("0.NA/88.118.8", 200)],
                          overwrite=True)  # fmt: skip
    assert _unchanged(store, before)


def test_unheld_prefix_is_not_responsible(reg, store):
    with pytest.raises(NotResponsible):
        reg.create_handle(A8, "77.1/x", [v(1, "URL", "https://a")])


def test_server_admin_may_create_anywhere_held(reg):
    assert reg.create_handle(ROOT, "88.118.9/BY-ROOT", [v(1, "URL", "https://r")]).created


def test_operator_acts_unlogged(reg, store):
    res = reg.create_handle(OPERATOR, "88.118.8/OP-1", [v(1, "URL", "https://o")])
    assert list(store.changes_since(res.txn_id - 1))[-1].identity == ""


# -- values -------------------------------------------------------------------------------------


def test_put_values_adds_and_replaces(reg):
    reg.create_handle(A8, "88.118.8/V-1", [v(1, "URL", "https://a"), admin_value("0.NA/88.118.8", 200)])
    reg.put_values(A8, "88.118.8/V-1", [v(1, "URL", "https://b"), v(2, "EMAIL", "q@x")])
    rec = reg.read(A8, "88.118.8/V-1")
    assert [(x.index, x.data) for x in rec if x.type != "HS_ADMIN"] == [(1, b"https://b"), (2, b"q@x")]
    with pytest.raises(ValueExists):
        reg.put_values(A8, "88.118.8/V-1", [v(2, "EMAIL", "other")], overwrite=False)


def test_remove_values_needs_every_index(reg, store):
    reg.create_handle(A8, "88.118.8/V-2", [v(1, "URL", "https://a"), v(2, "EMAIL", "q@x"),
                                           admin_value("0.NA/88.118.8", 200)])  # fmt: skip
    before = store.last_txn_id()
    with pytest.raises(NoSuchValue):
        reg.remove_values(A8, "88.118.8/V-2", [2, 7])
    assert _unchanged(store, before)
    reg.remove_values(A8, "88.118.8/V-2", [2])
    assert [x.index for x in reg.read(A8, "88.118.8/V-2")] == [1, 100]


def test_another_enterprise_cannot_change_values(reg, store):
    reg.create_handle(A8, "88.118.8/V-3", [v(1, "URL", "https://a"), admin_value("0.NA/88.118.8", 200)])
    before = store.last_txn_id()
    for call in (lambda: reg.put_values(A9, "88.118.8/V-3", [v(1, "URL", "https://evil")]),
                 lambda: reg.remove_values(A9, "88.118.8/V-3", [1]),
                 lambda: reg.delete_handle(A9, "88.118.8/V-3"),
                 lambda: reg.create_handle(A9, "88.118.8/V-3", [v(1, "URL", "x")], overwrite=True)):
        with pytest.raises(Forbidden):
            call()
    assert _unchanged(store, before)


def test_granting_oneself_admin_needs_add_admin(reg, store):
    limited = AdminRecord("0.NA/88.118.8", 200, 0x0070).to_bytes()  # value bits, no admin bits
    reg.create_handle(A8, "88.118.8/V-4", [v(1, "URL", "https://a"), v(100, "HS_ADMIN", limited)])
    reg.put_values(A8, "88.118.8/V-4", [v(1, "URL", "https://b")])  # its value rights work
    before = store.last_txn_id()
    me = AdminRecord("88.118.8/ADMIN", 300, ALL).to_bytes()
    with pytest.raises(Forbidden):  # a new HS_ADMIN: ADD_ADMIN
        reg.put_values(A8, "88.118.8/V-4", [v(101, "HS_ADMIN", me)])
    with pytest.raises(Forbidden):  # widening the existing one: MODIFY_ADMIN
        reg.put_values(A8, "88.118.8/V-4",
                       [v(100, "HS_ADMIN", AdminRecord("0.NA/88.118.8", 200, ALL).to_bytes())])
    with pytest.raises(Forbidden):  # the same through a whole-record overwrite
        reg.create_handle(A8, "88.118.8/V-4", [v(1, "URL", "https://b"), v(100, "HS_ADMIN", me)],
                          overwrite=True)  # fmt: skip
    assert _unchanged(store, before)


# -- delete, read, list, changes ------------------------------------------------------------------


def test_delete_handle(reg, store):
    reg.create_handle(A8, "88.118.8/D-1", [v(1, "URL", "https://a"), admin_value("0.NA/88.118.8", 200)])
    reg.delete_handle(A8, "88.118.8/d-1")
    assert reg.read(A8, "88.118.8/D-1") is None
    with pytest.raises(HandleNotFound):
        reg.delete_handle(A8, "88.118.8/D-1")


def test_read_withholds_private_values_from_others(reg):
    reg.create_handle(A8, "88.118.8/R-1", [v(1, "URL", "https://a"), v(2, "NOTE", "private", 0x0C),
                                           admin_value("0.NA/88.118.8", 200)])  # fmt: skip
    assert [x.index for x in reg.read(A8, "88.118.8/R-1")] == [1, 2, 100]
    assert [x.index for x in reg.read(A9, "88.118.8/R-1")] == [1, 100]
    assert [x.index for x in reg.read(None, "88.118.8/R-1")] == [1, 100]


def test_secret_keys_are_not_readable_by_other_enterprises(reg):
    assert "HS_SECKEY" not in [x.type for x in reg.read(A9, "88.118.8/ADMIN")]
    assert "HS_SECKEY" not in [x.type for x in reg.read(None, "88.118.8/ADMIN")]


def test_listing_needs_list_handles(reg, store):
    with pytest.raises(AuthenticationNeeded):
        reg.list_handles(None, "88.118.8")
    with pytest.raises(Forbidden):  # 0x7FF has no LIST_HANDLES
        reg.list_handles(A8, "88.118.8")
    assert reg.list_handles(ROOT, "88.118.8") == (1, ["88.118.8/ADMIN"])
    assert Registry(store, allow_anonymous_list=True).list_handles(None, "88.118.8")[0] == 1


def test_change_log_is_for_server_admins(reg):
    reg.create_handle(A8, "88.118.8/C-1", [v(1, "URL", "https://a")])
    with pytest.raises(AuthenticationNeeded):
        reg.changes(None)
    with pytest.raises(Forbidden):
        reg.changes(A8)
    log = reg.changes(ROOT, 0, 100)
    assert log[-1].key == b"88.118.8/C-1" and log[-1].identity == "300:88.118.8/ADMIN"
    assert [c.txn_id for c in reg.changes(ROOT, log[-2].txn_id, 1)] == [log[-1].txn_id]


@pytest.mark.parametrize("handle", ["88.118.8/../88.118.9/x", "88.118..8/x", "", "88.118.8/"])
def test_tricky_names_are_invalid_or_stay_in_their_prefix(reg, store, handle):
    before = store.last_txn_id()
    with pytest.raises((InvalidIdentifier, Forbidden, NotResponsible)):
        reg.create_handle(A8, handle, [v(1, "URL", "https://a")])
        # a literal "../" is just part of the suffix under 88.118.8, never another prefix
        assert Identifier.parse(handle).prefix_key == b"88.118.8"
        raise Forbidden("created inside its own prefix, as it may")
    if store.last_txn_id() != before:
        assert all(c.key.startswith(b"88.118.8/") for c in store.changes_since(before))


# -- authentication ---------------------------------------------------------------------------------


def test_basic_secret(store):
    auth = Authenticator(store)
    assert auth.secret("300:88.118.8/ADMIN", b"secret-8", "c1") == A8
    assert auth.secret("0:88.118.8/admin", b"secret-8", "c1").index == 0  # any key value
    for user, pw in (("300:88.118.8/ADMIN", b"secret-9"), ("300:88.118.9/ADMIN", b"secret-8"),
                     ("301:88.118.8/ADMIN", b"secret-8"), ("300:88.118.8/ADMIN", b""),
                     ("garbage", b"secret-8"), ("300:88.118.8/NOBODY", b"secret-8")):
        with pytest.raises(AuthenticationFailed) as info:
            auth.secret(user, pw, f"c-{user}")
        assert "secret" not in info.value.message


def test_empty_secret_never_authenticates(store):
    store.write([Change(b"88.118.8/EMPTY", pack(Record([v(300, "HS_SECKEY", b"", 0x0C)])))])
    with pytest.raises(AuthenticationFailed):
        Authenticator(store).secret("300:88.118.8/EMPTY", b"", "c")


def test_failed_logins_are_rate_limited_per_client(store):
    clock = [0.0]
    auth = Authenticator(store, limiter=FailureLimiter(limit=3, window=60, clock=lambda: clock[0]))
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            auth.secret("300:88.118.8/ADMIN", b"wrong", "10.0.0.1")
    with pytest.raises(TooManyAttempts):  # even the right secret, while limited
        auth.secret("300:88.118.8/ADMIN", b"secret-8", "10.0.0.1")
    assert auth.secret("300:88.118.8/ADMIN", b"secret-8", "10.0.0.2") == A8  # other client
    clock[0] = 61.0
    assert auth.secret("300:88.118.8/ADMIN", b"secret-8", "10.0.0.1") == A8


def test_limiter_memory_is_bounded():
    lim = FailureLimiter(limit=1, max_clients=10)
    for n in range(100):
        lim.failed(f"c{n}")
    assert len(lim._failures) == 10


# -- sessions ---------------------------------------------------------------------------------------


def test_session_tokens(store):
    clock = [1000.0]
    tokens = SessionTokens(store, lifetime=60, clock=lambda: clock[0])
    t = tokens.issue(A8)
    assert tokens.check(t) == A8
    assert SessionTokens(store, clock=lambda: clock[0]).check(t) == A8  # one key per store
    payload, sig = t.split(".")
    assert tokens.check(payload + "." + sig[::-1]) is None
    assert tokens.check(t + "x") is None and tokens.check("") is None and tokens.check("a.b.c") is None
    clock[0] = 1061.0
    assert tokens.check(t) is None


# -- batches ------------------------------------------------------------------------------------


def _batch(n: int, tag: str, size: int = 10) -> list:
    return [Registry.batch_item("create", f"88.118.8/{tag}-{i}",
                                [v(1, "URL", "x" * size), admin_value("0.NA/88.118.8", 200)])
            for i in range(n)]  # fmt: skip


def test_batch_results_per_item_and_one_transaction(reg, store):
    before = store.last_txn_id()
    res = reg.apply_batch(A8, _batch(3, "BT") + [Registry.batch_item("create", "88.118.9/X", [])])
    assert [r.outcome.value for r in res.results] == ["ok", "ok", "ok", "forbidden"]
    assert res.txn_id == before + 3 and not res.replayed
    log = list(store.changes_since(before))
    assert [c.identity for c in log] == ["300:88.118.8/ADMIN"] * 3


def test_batch_idempotency_is_committed_with_the_changes(tmp_path):
    s = LmdbStore(tmp_path / "small", map_size=1 << 20)  # too small for the first attempt
    try:
        s.write(enterprise_changes("88.118.8", b"secret-8"))
        r = Registry(s, clock=lambda: T0)
        big = _batch(400, "BIG", size=3000)
        with pytest.raises(StoreFull):
            r.apply_batch(A8, big, idempotency_key="k1", fingerprint=b"req-1")
        assert r.read(A8, "88.118.8/BIG-0") is None  # nothing of it, and no answer recorded
        small = _batch(2, "SMALL")
        first = r.apply_batch(A8, small, idempotency_key="k1", fingerprint=b"req-2")
        assert not first.replayed and {x.outcome.value for x in first.results} == {"ok"}
        again = r.apply_batch(A8, small, idempotency_key="k1", fingerprint=b"req-2")
        assert again.replayed and again.results == first.results and again.txn_id == 0
        with pytest.raises(MalformedRequest):
            r.apply_batch(A8, small, idempotency_key="k1", fingerprint=b"other")
    finally:
        s.close()


def test_batch_limits(reg):
    with pytest.raises(AuthenticationNeeded):
        reg.apply_batch(None, _batch(1, "N"))
    with pytest.raises(MalformedRequest):
        reg.apply_batch(A8, _batch(2001, "M"))
