"""The operator tools (registry.operator) and prefix disabling in the store, on real LMDB files.

The node's own prefix ``88.118`` is created by the operator; its admin ``300:88.118/ADMIN`` is
the configured server admin.  Enterprises are then created under it.  Every refusal also
asserts that nothing was written (the change log did not move).
"""

from __future__ import annotations

import asyncio

import lmdb
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from registry import operator as O
from registry.authz import Identity
from registry.identities import Authenticator, FailureLimiter
from registry.service import OPERATOR, Registry
from resolver.core.authority import AuthorityHandler
from resolver.core.request import ResolveRequest
from resolver.errors import (
    AlreadyExists, AuthenticationFailed, AuthenticationNeeded, Forbidden, HandleNotFound,
    InvalidIdentifier, InvalidValue, NoSuchValue, NotResponsible, Outcome, ValueExists,
)  # fmt: skip
from resolver.identifier import Identifier
from resolver.protocols.handle.auth import generate_rsa_key, rsa_public_key_bytes
from resolver.protocols.handle.codes import ResponseCode
from resolver.protocols.handle.constants import OpCode
from resolver.protocols.handle.message import Message, ResolutionRequest
from resolver.record import Record, pack, unpack
from resolver.store import Change
from resolver.store import schema as S
from resolver.store.lmdb_store import LmdbStore
from resolver.upstream.client import prepare
from resolver.values import AdminRecord, HandleValue, decode_vlist

ROOT = Identity.parse("300:88.118/ADMIN")
T0 = 1_800_000_000


@pytest.fixture
def reg(store) -> Registry:
    return Registry(store, server_admins=[ROOT], clock=lambda: T0)


@pytest.fixture
def op(reg) -> O.Operator:
    return O.Operator(reg)


@pytest.fixture
def node(op):
    """(operator, root secret, 88.118.9 admin secret): the node prefix and one enterprise."""
    _, root = op.create_prefix("88.118", "The node")
    _, nine = op.create_prefix("88.118.9", "Example Co")
    return op, root, nine


def _auth(store, user: str, secret: str) -> Identity:
    return Authenticator(store, limiter=FailureLimiter(limit=1000)).secret(
        user, secret.encode(), "127.0.0.1")


def _pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _url(index=1, url="https://example.com/x") -> HandleValue:
    return HandleValue(index, "URL", url.encode())


def _record(store, handle: str) -> Record:
    ident = Identifier.parse(handle)
    blob = store.get_prefix(ident.suffix_key) if ident.is_prefix_handle else store.get_record(
        ident.key)
    return unpack(blob)


# -- create_prefix ---------------------------------------------------------------------------------


def test_create_prefix_writes_the_prefix_handle_and_the_admin_identity(node, store):
    op, _root, secret = node
    na = {v.index: v for v in _record(store, "0.NA/88.118.9")}
    assert sorted(na) == [O.ORG_INDEX, 100, 200]
    assert (na[O.ORG_INDEX].type, na[O.ORG_INDEX].data) == ("ORG", b"Example Co")
    assert AdminRecord.from_bytes(na[100].data) == AdminRecord("0.NA/88.118.9", 200, 0x7FF)
    assert decode_vlist(na[200].data) == [("88.118.9/ADMIN", 300)]
    ident = {v.index: v for v in _record(store, "88.118.9/ADMIN")}
    assert AdminRecord.from_bytes(ident[100].data) == AdminRecord("0.NA/88.118.9", 200, 0x7FF)
    assert ident[300].type == "HS_SECKEY" and ident[300].data == secret.encode()
    assert ident[300].permissions == 0b1100  # admin read/write only: never public
    assert all(v.timestamp == T0 for v in list(na.values()) + list(ident.values()))
    assert len(secret) == 43 and set(secret) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_both_handles_are_written_in_one_logged_transaction_by_the_operator(op, store):
    op.create_prefix("88.118", "The node")
    before = store.last_txn_id()
    op.create_prefix("88.118.9", "Example Co")
    logged = list(store.changes_since(before))
    assert [(c.key, c.action, c.op, c.identity) for c in logged] == [
        (b"88.118.9/ADMIN", S.ACTION_CREATE, 0, ""), (b"88.118.9", S.ACTION_HOME_PREFIX, 0, "")]
    assert len({c.time_ms for c in logged}) == 1


def test_the_printed_secret_authenticates_and_the_identity_administers_its_prefix(node, reg, store):
    _op, _root, secret = node
    who = _auth(store, "300:88.118.9/ADMIN", secret)
    assert who == Identity.parse("300:88.118.9/ADMIN")
    assert reg.create_handle(who, "88.118.9/SN-1", [_url()]).created
    before = store.last_txn_id()
    with pytest.raises((Forbidden, NotResponsible)):
        reg.create_handle(who, "88.118/SN-1", [_url()])
    with pytest.raises(AuthenticationFailed):
        _auth(store, "300:88.118.9/ADMIN", secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert store.last_txn_id() == before


def test_create_prefix_with_a_public_key(op, store):
    key = generate_rsa_key(1024)
    who, secret = op.create_prefix("88.118", "The node", pubkey_pem=_pem(key).decode())
    assert (str(who), secret) == ("300:88.118/ADMIN", None)
    assert Authenticator(store).key_values(who, "HS_PUBKEY") == [rsa_public_key_bytes(key)]
    assert Authenticator(store).key_values(who, "HS_SECKEY") == []


@pytest.mark.parametrize("pem", [
    b"not a key",
    b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    "private",  # a private key is refused: the node must never hold it
    "ed25519",  # no HS_PUBKEY encoding here
])  # fmt: skip
def test_a_bad_public_key_is_refused_and_nothing_is_written(op, store, pem):
    if pem == "private":
        pem = generate_rsa_key(1024).private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption())  # fmt: skip
    elif pem == "ed25519":
        pem = _pem(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(InvalidValue):
        op.create_prefix("88.118", "The node", pubkey_pem=pem)
    assert store.last_txn_id() == 0 and store.prefixes() == []


def test_an_existing_or_disabled_prefix_or_admin_handle_is_not_created_again(node, store):
    op, _root, _nine = node
    before = store.last_txn_id()
    with pytest.raises(AlreadyExists):
        op.create_prefix("88.118.9", "Again")
    op.disable_prefix("88.118.9")
    with pytest.raises(AlreadyExists):
        op.create_prefix("0.na/88.118.9", "Again")
    assert store.last_txn_id() == before + 1
    store.write([Change(b"88.118.10/ADMIN", pack(Record([_url()])))])  # left over, say
    before = store.last_txn_id()
    with pytest.raises(AlreadyExists):
        op.create_prefix("88.118.10", "Third")
    assert store.last_txn_id() == before and store.get_prefix(b"88.118.10") is None


@pytest.mark.parametrize("prefix", ["", "0", "0.NA", "0.x", "88..1", ".88", "88.", "88/1",
                                    "0.NA/0.NA", "0.NA/"])  # fmt: skip
def test_bad_and_reserved_prefixes_are_refused(op, store, prefix):
    with pytest.raises(InvalidIdentifier):
        op.create_prefix(prefix, "Org")
    assert store.last_txn_id() == 0


@pytest.mark.parametrize("kw", [{"org": ""}, {"org": "  "}, {"org": "a\nb"},
                                {"org": "x" * 1025}, {"admin_index": 100},
                                {"admin_index": 0}, {"admin_index": 1 << 31}])  # fmt: skip
def test_bad_organisation_or_admin_index_is_refused(op, store, kw):
    args = {"org": "Org", **kw}
    with pytest.raises(InvalidValue):
        op.create_prefix("88.118", args.pop("org"), **args)
    assert store.last_txn_id() == 0


def test_a_chosen_admin_index_is_named_by_the_group(op, store):
    who, secret = op.create_prefix("88.118", "The node", admin_index=301)
    assert str(who) == "301:88.118/ADMIN"
    na = {v.index: v for v in _record(store, "0.NA/88.118")}
    assert decode_vlist(na[200].data) == [("88.118/ADMIN", 301)]
    assert _auth(store, "301:88.118/ADMIN", secret) == who


def test_a_server_admin_creates_derived_prefixes_of_homed_prefixes_only(node, store):
    op, root, _nine = node
    admin = _auth(store, "300:88.118/ADMIN", root)
    who, secret = op.create_prefix("88.118.10", "Ten", identity=admin)
    assert str(who) == "300:88.118.10/ADMIN" and secret
    assert [c.identity for c in store.changes_since(store.last_txn_id() - 2)] == [str(ROOT)] * 2
    before = store.last_txn_id()
    for prefix in ("99", "77.1", "88.118.11.1"):  # top level; parents not homed here
        with pytest.raises(Forbidden):
            op.create_prefix(prefix, "No", identity=admin)
    assert store.last_txn_id() == before


def test_an_enterprise_admin_is_not_a_server_admin(node, store):
    op, _root, nine = node
    admin9 = _auth(store, "300:88.118.9/ADMIN", nine)  # holds ADD_DERIVED_PREFIX on 88.118.9
    before = store.last_txn_id()
    calls = [lambda: op.create_prefix("88.118.9.1", "Sub", identity=admin9),
             lambda: op.list_prefixes(identity=admin9),
             lambda: op.show_prefix("88.118.9", identity=admin9),
             lambda: op.disable_prefix("88.118", identity=admin9),
             lambda: op.identity_add("88.118.9/ADMIN", 301, identity=admin9),
             lambda: op.identity_rotate("88.118/ADMIN", 300, identity=admin9)]
    for call in calls:
        with pytest.raises(Forbidden):
            call()
    with pytest.raises(AuthenticationNeeded):
        op.disable_prefix("88.118.9", identity=None)
    assert store.last_txn_id() == before and store.get_prefix(b"88.118") is not None


def test_is_server_admin_follows_config_and_groups(node, store):
    op, _root, _nine = node
    assert op.is_server_admin(OPERATOR) and op.is_server_admin(ROOT)
    assert not op.is_server_admin(None)
    assert not op.is_server_admin(Identity.parse("300:88.118.9/ADMIN"))
    # server_admins = ["200:0.NA/88.118"]: the node prefix's admin group, as Handle.net sets up
    grouped = O.Operator(Registry(store, server_admins=[Identity.parse("200:0.NA/88.118")]))
    assert grouped.is_server_admin(ROOT)
    assert not grouped.is_server_admin(Identity.parse("300:88.118.9/ADMIN"))


# -- list / show -----------------------------------------------------------------------------------


def test_list_prefixes_shows_enabled_and_disabled_with_their_organisation(node):
    op, _root, _nine = node
    op.create_prefix("88.118.10", "Ten")
    op.disable_prefix("88.118.10")
    assert [(p.prefix, p.enabled, p.org) for p in op.list_prefixes()] == [
        ("88.118", True, "The node"), ("88.118.10", False, "Ten"), ("88.118.9", True, "Example Co")]
    assert O.list_prefixes(op.store)[1].to_json() == {"prefix": "88.118.10", "enabled": False,
                                                      "org": "Ten"}  # fmt: skip


def test_show_prefix(node, reg, store):
    op, _root, nine = node
    who = _auth(store, "300:88.118.9/ADMIN", nine)
    for n in range(3):
        reg.create_handle(who, f"88.118.9/SN-{n}", [_url()])
    info = op.show_prefix("0.NA/88.118.9")
    assert (info.prefix, info.enabled, info.org, info.identifiers) == ("88.118.9", True,
                                                                      "Example Co", 4)  # fmt: skip
    assert [(a.index, a.handle, a.admin_index, a.permissions, a.members) for a in info.admins] == [
        (100, "0.NA/88.118.9", 200, 0x7FF, ("300:88.118.9/ADMIN",))]
    assert [v.index for v in info.values] == [O.ORG_INDEX, 100, 200]
    doc = info.to_json()
    assert doc["admins"][0]["permissions"] == "011111111111" and len(doc["values"]) == 3
    op.disable_prefix("88.118.9")
    shown = op.show_prefix("88.118.9")
    assert not shown.enabled and shown.identifiers == 4
    assert shown.admins[0].members == ("300:88.118.9/ADMIN",)  # groups read while disabled too
    with pytest.raises(HandleNotFound):
        op.show_prefix("88.118.77")


# -- disable / enable ------------------------------------------------------------------------------


def test_disable_moves_the_prefix_handle_aside_and_enable_brings_it_back(node, store):
    op, _root, _nine = node
    blob = store.get_prefix(b"88.118.9")
    records = store.list_keys(b"88.118.9")
    txn = op.disable_prefix("88.118.9")
    assert store.get_prefix(b"88.118.9") is None and store.get_disabled(b"88.118.9") == blob
    assert store.disabled_prefixes() == [b"88.118.9"] and store.list_keys(b"88.118.9") == records
    (c,) = list(store.changes_since(txn - 1))
    assert (c.action, c.key, c.op, c.identity, c.after) == (S.ACTION_UNHOME_PREFIX, b"88.118.9",
                                                            0, "", None)  # fmt: skip
    assert op.disable_prefix("88.118.9") == 0 and store.last_txn_id() == txn  # idempotent
    txn2 = op.enable_prefix("88.118.9")
    assert store.get_prefix(b"88.118.9") == blob and store.get_disabled(b"88.118.9") is None
    (c2,) = list(store.changes_since(txn))
    assert (c2.action, c2.before, c2.after) == (S.ACTION_HOME_PREFIX, None, c.before)
    assert op.enable_prefix("88.118.9") == 0 and store.last_txn_id() == txn2


def test_disabling_an_unknown_prefix_is_not_found(op, store):
    for fn in (op.disable_prefix, op.enable_prefix):
        with pytest.raises(HandleNotFound):
            fn("88.118.77")
    assert store.last_txn_id() == 0


def test_a_disabled_prefix_does_not_resolve_on_the_hot_path_or_the_engine(node, reg, store, twin):
    op, _root, nine = node
    reg.create_handle(_auth(store, "300:88.118.9/ADMIN", nine), "88.118.9/SN-1", [_url()])

    def hot(handle: bytes):
        with store.read() as txn:
            return twin.http_resolve(handle, None, None, True, txn, store.records_db,
                                     store.prefixes_db, False)  # fmt: skip

    def engine(handle: str):
        req = ResolveRequest(Identifier.parse(handle), (), (), True)
        return asyncio.run(AuthorityHandler(store).resolve(req))

    assert b'"responseCode":1' in hot(b"88.118.9/SN-1")
    op.disable_prefix("88.118.9")
    assert hot(b"88.118.9/SN-1") is None and hot(b"0.NA/88.118.9") is None
    assert engine("88.118.9/SN-1") is None and engine("0.NA/88.118.9") is None  # → not here
    op.enable_prefix("88.118.9")
    assert b'"responseCode":1' in hot(b"88.118.9/SN-1")
    assert engine("88.118.9/SN-1").outcome is Outcome.OK


def test_the_record_cache_forgets_a_disabled_prefix(node, reg, store, twin):
    op, _root, nine = node
    reg.create_handle(_auth(store, "300:88.118.9/ADMIN", nine), "88.118.9/SN-1", [_url()])
    cache = twin.RecordCache(1 << 20, store.changes_db)
    wire = prepare(OpCode.RESOLUTION, ResolutionRequest(b"88.118.9/SN-1", (), ())).wire

    def answer():
        with store.read() as txn:
            cache.sync(txn)
            return twin.handle_resolve(wire, txn, store.records_db, store.prefixes_db, False, cache)

    assert Message.from_wire(answer()).header.rc == ResponseCode.SUCCESS
    assert len(cache) == 1
    op.disable_prefix("88.118.9")
    assert answer() is None and len(cache) == 0  # the general path answers: not here
    op.enable_prefix("88.118.9")
    assert Message.from_wire(answer()).header.rc == ResponseCode.SUCCESS


def test_writes_under_a_disabled_prefix_are_refused(node, reg, store):
    op, root, nine = node
    who = _auth(store, "300:88.118.9/ADMIN", nine)
    reg.create_handle(who, "88.118.9/SN-1", [_url()])
    op.disable_prefix("88.118.9")
    before = store.last_txn_id()
    admin = _auth(store, "300:88.118/ADMIN", root)
    calls = [lambda: reg.create_handle(who, "88.118.9/SN-2", [_url()]),
             lambda: reg.put_values(who, "88.118.9/SN-1", [_url(2)]),
             lambda: reg.delete_handle(admin, "88.118.9/SN-1"),
             lambda: op.identity_add("88.118.9/ADMIN", 301),
             lambda: op.identity_rotate("88.118.9/ADMIN", 300)]
    for call in calls:
        with pytest.raises(NotResponsible):
            call()
    with pytest.raises(HandleNotFound):  # its prefix handle is not among the homed ones
        reg.delete_handle(admin, "0.NA/88.118.9")
    with pytest.raises(AlreadyExists):  # re-homing it while disabled would shadow the records
        reg.create_handle(admin, "0.NA/88.118.9", [_url()])
    with pytest.raises(AlreadyExists):
        store.write([Change(b"88.118.9", pack(Record([_url()])), prefix=True)])
    assert store.last_txn_id() == before
    assert store.get_record(b"88.118.9/SN-1") is not None


def test_a_server_admin_disables_and_enables_with_its_identity_logged(node, store):
    op, root, _nine = node
    admin = _auth(store, "300:88.118/ADMIN", root)
    txn = op.disable_prefix("88.118.9", identity=admin)
    assert list(store.changes_since(txn - 1))[0].identity == "300:88.118/ADMIN"
    assert op.enable_prefix("88.118.9", identity=admin) == txn + 1


def test_an_older_store_without_the_disabled_database_opens_read_only_and_upgrades(tmp_path):
    path = tmp_path / "old"
    env = lmdb.open(str(path), max_dbs=8, map_size=8 << 20)
    with env.begin(write=True) as txn:
        dbs = {name: env.open_db(name, txn=txn) for name in (S.RECORDS, S.PREFIXES, S.CHANGES,
                                                             S.META)}  # fmt: skip
        txn.put(S.META_FORMAT_VERSION, b"2", db=dbs[S.META])
        na = Record([HandleValue(O.ORG_INDEX, "ORG", b"Old")])
        txn.put(b"88.7", pack(na), db=dbs[S.PREFIXES])
    env.close()
    ro = LmdbStore(path, map_size=8 << 20, readonly=True)
    try:
        assert ro.disabled_db is None and ro.get_disabled(b"88.7") is None
        assert ro.disabled_prefixes() == []
        listed = O.list_prefixes(ro)
        assert [(p.prefix, p.enabled, p.org) for p in listed] == [("88.7", True, "Old")]
    finally:
        ro.close()
    rw = LmdbStore(path, map_size=8 << 20)
    try:
        assert O.disable_prefix(rw, "88.7") == 1 and rw.disabled_prefixes() == [b"88.7"]
    finally:
        rw.close()
    ro = LmdbStore(path, map_size=8 << 20, readonly=True)
    try:
        assert ro.get_disabled(b"88.7") is not None and ro.get_prefix(b"88.7") is None
    finally:
        ro.close()


# -- identities ----------------------------------------------------------------------------------


def test_identity_add_a_second_secret_and_a_public_key(node, store):
    op, _root, nine = node
    who, secret = op.identity_add("88.118.9/ADMIN", 301)
    assert str(who) == "301:88.118.9/ADMIN"
    assert _auth(store, "301:88.118.9/ADMIN", secret) == who
    assert _auth(store, "300:88.118.9/ADMIN", nine)  # the first key still works
    key = generate_rsa_key(1024)
    who2, none = O.identity_add(op.registry, "88.118.9/ADMIN", 302, pubkey_pem=_pem(key))
    assert none is None
    assert Authenticator(store).key_values(who2, "HS_PUBKEY") == [rsa_public_key_bytes(key)]
    seckey = next(v for v in _record(store, "88.118.9/ADMIN") if v.index == 301)
    assert seckey.permissions == 0b1100 and seckey.timestamp == T0


def test_identity_add_refusals(node, store):
    op, _root, _nine = node
    before = store.last_txn_id()
    with pytest.raises(ValueExists):
        op.identity_add("88.118.9/ADMIN", 300)
    with pytest.raises(HandleNotFound):
        op.identity_add("88.118.9/NOBODY", 300)
    with pytest.raises(NotResponsible):
        op.identity_add("77.1/ADMIN", 300)
    with pytest.raises(InvalidValue):
        op.identity_add("88.118.9/ADMIN", 0)
    assert store.last_txn_id() == before


def test_rotation_replaces_the_secret_at_once(node, store):
    op, _root, nine = node
    who, fresh = op.identity_rotate("88.118.9/ADMIN", 300)
    assert fresh != nine and str(who) == "300:88.118.9/ADMIN"
    with pytest.raises(AuthenticationFailed):
        _auth(store, "300:88.118.9/ADMIN", nine)
    assert _auth(store, "300:88.118.9/ADMIN", fresh) == who
    value = next(v for v in _record(store, "88.118.9/ADMIN") if v.index == 300)
    assert (value.type, value.permissions, value.data) == ("HS_SECKEY", 0b1100, fresh.encode())


def test_rotation_refusals(node, store):
    op, _root, _nine = node
    before = store.last_txn_id()
    with pytest.raises(NoSuchValue):
        op.identity_rotate("88.118.9/ADMIN", 301)
    with pytest.raises(InvalidValue):  # the HS_ADMIN value is no secret
        op.identity_rotate("88.118.9/ADMIN", 100)
    with pytest.raises(HandleNotFound):
        op.identity_rotate("88.118.9/NOBODY", 300)
    assert store.last_txn_id() == before


def test_a_server_admin_rotates_with_its_identity_logged(node, store):
    op, root, nine = node
    admin = _auth(store, "300:88.118/ADMIN", root)
    _who, fresh = op.identity_rotate("88.118.9/ADMIN", 300, identity=admin)
    last = list(store.changes_since(store.last_txn_id() - 1))[0]
    assert (last.key, last.identity, last.action) == (b"88.118.9/ADMIN", "300:88.118/ADMIN",
                                                      S.ACTION_UPDATE)  # fmt: skip
    assert _auth(store, "300:88.118.9/ADMIN", fresh)
