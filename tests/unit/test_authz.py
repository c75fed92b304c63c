"""Unit tests of ``registry.authz``: the HS_ADMIN / HS_VLIST authorization rules.

Every decision reads a real LMDB store in tmp_path: prefix handles ``0.NA/<prefix>`` in the
prefixes database (keyed by the normalised prefix), everything else in the records database,
written with ``LmdbStore.write`` + ``record.pack`` and read back through ``record.unpack``.
"""

from __future__ import annotations

import pytest

from resolver.errors import (
    AuthenticationNeeded, Forbidden, InvalidIdentifier, Outcome,
)  # fmt: skip
from resolver.identifier import Identifier
from resolver.record import Record, pack, unpack
from resolver.store import Change
from resolver.store.lmdb_store import LmdbStore
from resolver.values import ADMIN_PERMISSION_NAMES, AdminRecord, HandleValue, SiteInfo, encode_vlist
from registry.authz import (
    ALL_PERMS, MAX_GROUP_LOOKUPS, Authorizer, Identity, Op, Perm, needed_for_replace,
    needed_for_values,
)  # fmt: skip

P = Perm
#: Rights the 88.118.8 enterprise group gets on its prefix handle: no *_ADMIN, no derived.
ENT_NA = P.ADD_HANDLE | P.DELETE_HANDLE | P.ADD_VALUE | P.REMOVE_VALUE | P.MODIFY_VALUE \
    | P.LIST_HANDLES  # fmt: skip
VALUES_ONLY = P.ADD_VALUE | P.REMOVE_VALUE | P.MODIFY_VALUE | P.DELETE_HANDLE
SECRET = "s3cret-do-not-leak"

ENT = Identity.parse("300:88.118.8/ADMIN")  # enterprise admin of 88.118.8 (via group 200)
ENT9 = Identity.parse("300:88.118.9/ADMIN")
TOP = Identity.parse("300:88.118/ADMIN")  # admin of the parent prefix 88.118
SRV = Identity.parse("300:88.118/SRV")  # server admin, listed directly
OPS = Identity.parse("300:88.118/OPS")  # server admin through 88.118/SRVGROUP
OUT = Identity.parse("300:88.118.8/NOBODY")
ALICE = Identity.parse("300:88.118.8/ALICE")
DEEP = Identity.parse("300:88.118.8/DEEP")
SERVER_ADMINS = (SRV, Identity(200, "88.118/SRVGROUP"))


def v(index: int, vtype: str, data: bytes | str, perms: int = 0x0E) -> HandleValue:
    return HandleValue(index, vtype, data.encode() if isinstance(data, str) else data,
                       timestamp=1767225600, permissions=perms)  # fmt: skip


def adm(index: int, handle: str, ref_index: int, perms: int, vtype: str = "HS_ADMIN"):
    return v(index, vtype, AdminRecord(handle, ref_index, int(perms)).to_bytes())


def vlist(index: int, *members: tuple[str, int]) -> HandleValue:
    return v(index, "HS_VLIST", encode_vlist(list(members)))


PREFIXES = {
    "88.118": [adm(100, "0.NA/88.118", 200,
                   P.ADD_HANDLE | P.ADD_DERIVED_PREFIX | P.DELETE_DERIVED_PREFIX | P.LIST_HANDLES),
               vlist(200, ("88.118/ADMIN", 300))],
    "88.118.8": [adm(100, "0.NA/88.118.8", 200, ENT_NA),
                 vlist(200, ("88.118.8/ADMIN", 300)),
                 v(1, "HS_SITE", SiteInfo().to_bytes()),
                 v(300, "HS_SECKEY", SECRET, perms=0x0C)],
    "88.118.9": [adm(100, "88.118.9/ADMIN", 300, ALL_PERMS)],
    "88.118.88": [adm(100, "88.118.88/ADMIN", 300, ALL_PERMS)],
}  # fmt: skip

RECORDS = {
    "88.118.8/ADMIN": [v(300, "HS_SECKEY", SECRET, perms=0x0C),
                       adm(100, "88.118.8/ADMIN", 300, ALL_PERMS)],
    "88.118.8/dev-1": [v(1, "URL", "https://example.com/1"), v(2, "EMAIL", SECRET, perms=0x0C),
                       adm(100, "0.NA/88.118.8", 200, 0x7F3)],
    "88.118.8/dev-2": [v(1, "URL", "https://example.com/2"),
                       adm(100, "0.NA/88.118.8", 200, VALUES_ONLY),
                       v(3, "NOTE", "anyone may write", perms=0x0F),
                       v(4, "FROZEN", "nobody may write", perms=0x0A)],
    "88.118.8/split": [v(1, "URL", "https://example.com/s"),
                       adm(100, "88.118.8/ADMIN", 300, P.MODIFY_VALUE),
                       adm(101, "88.118.8/ADMIN", 300, P.ADD_ADMIN | P.REMOVE_ADMIN)],
    "88.118.8/lower-admin": [v(1, "URL", "https://example.com/l"),
                             adm(100, "88.118.8/admin", 300, P.ADD_VALUE)],
    "88.118.8/garbage": [v(100, "HS_ADMIN", b"\x00\x40\x00\x00\x00\xffjunk"),
                         adm(101, "88..bad/x", 300, ALL_PERMS),
                         adm(102, "88.118.8/ADMIN", 300, P.READ_VALUE),
                         adm(103, "88.118.8/ADMIN", 300, P.ADD_VALUE, vtype="hs_admin")],
    "88.118.8/G-A": [vlist(200, ("88.118.8/G-B", 200))],
    "88.118.8/G-B": [vlist(200, ("88.118.8/G-A", 200), ("88.118.8/alice", 300))],
    "88.118.8/team": [vlist(200, ("88.118.8/G-A", 200))],
    "88.118.8/BADVLIST": [v(200, "HS_VLIST", b"\xff\xff\xff"),
                          vlist(201, ("88.118.8/ALICE", 300)),
                          v(202, "URL", encode_vlist([("88.118.8/ALICE", 300)]))],
    "88.118.8/group-doc": [adm(100, "88.118.8/team", 200, P.MODIFY_VALUE | P.READ_VALUE),
                           v(1, "URL", "https://example.com/g")],
    "88.118/SRVGROUP": [vlist(200, ("88.118/OPS", 300))],
    "88.118.7/orphan": [adm(100, "88.118.8/ADMIN", 300, ALL_PERMS)],  # prefix not homed
    "88.118.9/thing": [v(1, "URL", "https://example.com/9"),
                       adm(100, "88.118.9/ADMIN", 300, ALL_PERMS)],
}  # fmt: skip
CHAIN = 5  # 88.118.8/CHAIN-0 → … → CHAIN-4 → DEEP: DEEP is five groups down
for _i in range(CHAIN):
    _next = ("88.118.8/DEEP", 300) if _i == CHAIN - 1 else (f"88.118.8/CHAIN-{_i + 1}", 200)
    RECORDS[f"88.118.8/CHAIN-{_i}"] = [vlist(200, _next)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    store = LmdbStore(tmp_path_factory.mktemp("authz") / "store", map_size=64 << 20)
    changes = [Change(p.encode(), pack(Record(vals)), prefix=True) for p, vals in PREFIXES.items()]
    changes += [Change(Identifier.parse(h).key, pack(Record(vals))) for h, vals in RECORDS.items()]
    store.write(changes)
    yield store
    store.close()


class Lookup:
    """The ``lookup`` the authorizer is given: prefix handles from the prefixes database,
    everything else from the records database; remembers what it was asked."""

    def __init__(self, store: LmdbStore) -> None:
        self.store = store
        self.calls: list[str] = []

    def __call__(self, text: str) -> Record | None:
        self.calls.append(text)
        ident = Identifier.parse(text)
        if ident.is_prefix_handle:
            blob = self.store.get_prefix(ident.suffix_key)
        else:
            blob = self.store.get_record(ident.key)
        return None if blob is None else unpack(blob)


@pytest.fixture
def lookup(world) -> Lookup:
    return Lookup(world)


@pytest.fixture
def authz(lookup) -> Authorizer:
    return Authorizer(lookup, SERVER_ADMINS)


def refused(authz, identity, op, handle, **kw) -> str:
    with pytest.raises(Forbidden) as info:
        authz.check(identity, op, handle, **kw)
    assert info.value.outcome is Outcome.FORBIDDEN
    assert SECRET not in info.value.message
    return info.value.message


# -- Perm and Identity ---------------------------------------------------------------------


def test_perm_bits_follow_the_spec_order():
    assert [Perm[name.upper()] for name in ADMIN_PERMISSION_NAMES] == [1 << i for i in range(12)]
    assert ALL_PERMS == 0xFFF
    assert (P.ADD_ADMIN | P.MODIFY_VALUE).describe() == "MODIFY_VALUE+ADD_ADMIN"
    assert Perm(0).describe() == "nothing"


def test_identity_parse_and_str():
    ident = Identity.parse("300:88.118.8/ADMIN")
    assert (ident.index, ident.handle, str(ident)) == (300, "88.118.8/ADMIN", "300:88.118.8/ADMIN")
    assert ident.key == b"88.118.8/ADMIN"
    assert Identity.parse(str(ident)) == ident


def test_identity_without_index_is_index_zero():
    ident = Identity.parse("88.118.8/ADMIN")
    assert (ident.index, ident.handle) == (0, "88.118.8/ADMIN")
    # a colon after the first slash belongs to the suffix
    odd = Identity.parse("88.118.8/a:b")
    assert (odd.index, odd.handle) == (0, "88.118.8/a:b")
    assert Identity.parse("7:88.118.8/a:b") == Identity(7, "88.118.8/A:B")


@pytest.mark.parametrize("text", ["x:88.118.8/ADMIN", "-1:88.118.8/ADMIN", ":88.118.8/ADMIN",
                                  "99999999999:88.118.8/ADMIN", "2147483648:88.118.8/ADMIN",
                                  "３００:88.118.8/ADMIN", "3 00:88.118.8/ADMIN"])  # fmt: skip
def test_identity_bad_index(text):
    with pytest.raises(InvalidIdentifier):
        Identity.parse(text)


@pytest.mark.parametrize("text", ["300:", "300:88..118/ADMIN", "300:88.118.8/", "300:/ADMIN",
                                  "300:.88/ADMIN", "300:88.118.8/A\x00"])  # fmt: skip
def test_identity_bad_handle(text):
    with pytest.raises(InvalidIdentifier):
        Identity.parse(text)


def test_identity_direct_construction_is_validated():
    with pytest.raises(InvalidIdentifier):
        Identity(-1, "88.118.8/ADMIN")
    with pytest.raises(InvalidIdentifier):
        Identity(True, "88.118.8/ADMIN")
    with pytest.raises(InvalidIdentifier):
        Identity(300, "88.118.8/")


def test_identity_compares_by_normalised_handle():
    a = Identity.parse("300:88.118.8/admin")
    assert a == ENT and hash(a) == hash(ENT) and a.handle == "88.118.8/admin"
    assert Identity.parse("300:0.na/88.118.8") == Identity(300, "0.NA/88.118.8")
    assert Identity.parse("301:88.118.8/ADMIN") != ENT
    assert Identity.parse("300:88.118.9/ADMIN") != ENT
    assert len({ENT, a, Identity(300, "88.118.8/Admin")}) == 1


# -- membership ----------------------------------------------------------------------------


def test_member_direct_and_case_variants(authz):
    assert authz.is_member(ENT, ENT)
    assert authz.is_member(Identity.parse("300:88.118.8/admin"), ENT)
    assert authz.is_member(ENT, Identity.parse("300:88.118.8/Admin"))
    assert not authz.is_member(OUT, ENT)


def test_index_zero_on_the_reference_side_matches_any_index(authz):
    assert authz.is_member(ENT, Identity(0, "88.118.8/ADMIN"))
    assert authz.is_member(Identity(7, "88.118.8/admin"), Identity(0, "88.118.8/ADMIN"))
    # ... but not on the identity's side
    assert not authz.is_member(Identity(0, "88.118.8/ADMIN"), ENT)
    assert not authz.is_member(Identity(301, "88.118.8/ADMIN"), ENT)


def test_index_zero_reference_is_not_expanded_as_a_group(authz, lookup):
    # 0.NA/88.118.8 has an HS_VLIST naming ENT at index 200, but 0:0.NA/88.118.8 is no group
    assert authz.is_member(ENT, Identity(200, "0.NA/88.118.8"))
    lookup.calls.clear()
    assert not authz.is_member(ENT, Identity(0, "0.NA/88.118.8"))
    assert lookup.calls == []


def test_member_through_a_group(authz):
    assert authz.is_member(ENT, Identity(200, "0.NA/88.118.8"))
    assert authz.is_member(ENT, Identity(200, "0.na/88.118.8"))  # case variant of the group
    assert not authz.is_member(ENT9, Identity(200, "0.NA/88.118.8"))
    assert not authz.is_member(Identity(301, "88.118.8/ADMIN"), Identity(200, "0.NA/88.118.8"))


def test_member_through_nested_groups(authz):
    # team:200 → G-A:200 → G-B:200 → alice (written lower-case in the list)
    assert authz.is_member(ALICE, Identity(200, "88.118.8/team"))
    assert not authz.is_member(OUT, Identity(200, "88.118.8/team"))


def test_cyclic_groups_end(authz, lookup):
    # G-A → G-B → G-A: the outsider is searched once through both and refused
    assert authz.is_member(ALICE, Identity(200, "88.118.8/G-A"))
    lookup.calls.clear()
    assert not authz.is_member(OUT, Identity(200, "88.118.8/G-A"))
    # each reference is resolved once (alice:300 too: any non-zero index may be a group)
    assert sorted(lookup.calls) == ["88.118.8/ALICE", "88.118.8/G-A", "88.118.8/G-B"]


def test_groups_deeper_than_max_depth_are_not_followed(lookup):
    root = Identity(200, "88.118.8/CHAIN-0")
    assert Authorizer(lookup, max_depth=CHAIN).is_member(DEEP, root)
    assert not Authorizer(lookup, max_depth=CHAIN - 1).is_member(DEEP, root)
    assert not Authorizer(lookup, max_depth=0).is_member(ENT, Identity(200, "0.NA/88.118.8"))
    assert Authorizer(lookup).is_member(DEEP, root)  # default 16


def test_group_lookups_are_bounded(lookup):
    calls = []

    def fan_out(text: str) -> Record:  # every handle is a group of two fresh groups
        calls.append(text)
        n = len(calls)
        return Record([vlist(200, (f"88.118.8/N{2 * n}", 200), (f"88.118.8/N{2 * n + 1}", 200))])

    authz = Authorizer(fan_out, max_depth=64)
    assert not authz.is_member(OUT, Identity(200, "88.118.8/N1"))
    assert len(calls) == MAX_GROUP_LOOKUPS


def test_only_a_vlist_at_the_referenced_index_counts(authz):
    # BADVLIST: 200 is undecodable, 201 is a valid list, 202 looks like one but is a URL
    assert not authz.is_member(ALICE, Identity(200, "88.118.8/BADVLIST"))
    assert authz.is_member(ALICE, Identity(201, "88.118.8/BADVLIST"))
    assert not authz.is_member(ALICE, Identity(202, "88.118.8/BADVLIST"))
    assert not authz.is_member(ALICE, Identity(200, "88.118.8/MISSING"))


# -- server admins -------------------------------------------------------------------------


def test_server_admin_direct_via_group_and_not(authz, lookup):
    assert authz.is_server_admin(SRV)
    assert authz.is_server_admin(Identity.parse("300:88.118/srv"))
    assert authz.is_server_admin(OPS)
    assert not authz.is_server_admin(Identity.parse("301:88.118/OPS"))
    assert not authz.is_server_admin(ENT)
    assert not Authorizer(lookup).is_server_admin(SRV)  # no server admins configured


# -- rights --------------------------------------------------------------------------------


def test_rights_union_direct_and_via_groups(authz, lookup):
    assert authz.rights(ENT, lookup("0.NA/88.118.8")) == ENT_NA
    assert authz.rights(ENT, lookup("88.118.8/split")) == P.MODIFY_VALUE | P.ADD_ADMIN \
        | P.REMOVE_ADMIN  # fmt: skip
    assert authz.rights(ALICE, lookup("88.118.8/group-doc")) == P.MODIFY_VALUE | P.READ_VALUE
    assert authz.rights(OUT, lookup("88.118.8/dev-1")) == Perm(0)
    assert authz.rights(SRV, lookup("88.118.8/dev-1")) == Perm(0)  # full access is in check


def test_rights_ignore_undecodable_admin_values(authz, lookup):
    # 100: garbage bytes; 101: names an invalid handle; 102, 103 (lower-case type) count
    assert authz.rights(ENT, lookup("88.118.8/garbage")) == P.READ_VALUE | P.ADD_VALUE
    authz.check(ENT, Op.READ_VALUE, "88.118.8/garbage")
    authz.check(ENT, Op.ADD_VALUE, "88.118.8/garbage", touched=[v(5, "URL", "x")])
    refused(authz, ENT, Op.DELETE_HANDLE, "88.118.8/garbage")


def test_case_variant_reference_in_hs_admin(authz):
    authz.check(ENT, Op.ADD_VALUE, "88.118.8/LOWER-ADMIN", touched=[v(9, "URL", "x")])


# -- check: authentication -----------------------------------------------------------------


@pytest.mark.parametrize("op", list(Op), ids=lambda op: op.name)
def test_no_identity_means_authentication_needed(authz, op):
    with pytest.raises(AuthenticationNeeded) as info:
        authz.check(None, op, "88.118.8/dev-1")
    assert info.value.outcome is Outcome.AUTH_NEEDED


def test_bad_handles_are_invalid(authz):
    for handle in ("88.118..8/x", "/x", "88.118.8/", ".88/x", ""):
        with pytest.raises(InvalidIdentifier):
            authz.check(ENT, Op.CREATE_HANDLE, handle)
    with pytest.raises(TypeError):
        authz.check(ENT, "create", "88.118.8/x")


# -- check: create -------------------------------------------------------------------------


@pytest.mark.parametrize("handle", ["88.118.8/new", "88.118.8/NEW", "88.118.8/设备-1"])
def test_create_under_own_prefix(authz, handle):
    authz.check(ENT, Op.CREATE_HANDLE, handle)
    authz.check(Identity.parse("300:88.118.8/admin"), Op.CREATE_HANDLE, handle)


@pytest.mark.parametrize("handle", ["88.118.9/new", "88.118.88/new", "88.118/new"])
def test_create_under_another_prefix_refused(authz, handle):
    msg = refused(authz, ENT, Op.CREATE_HANDLE, handle)
    assert "ADD_HANDLE" in msg and "300:88.118.8/ADMIN" in msg


def test_create_by_the_other_prefix_admin(authz):
    authz.check(ENT9, Op.CREATE_HANDLE, "88.118.9/new")
    refused(authz, ENT9, Op.CREATE_HANDLE, "88.118.8/new")
    authz.check(TOP, Op.CREATE_HANDLE, "88.118/new")
    refused(authz, TOP, Op.CREATE_HANDLE, "88.118.8/new")  # parent admins get no child rights


@pytest.mark.parametrize("handle", ["88.118.7/new", "88.118%2E8/new", "88.118.8%2F/new",
                                   "８８.118.8/new", "88.118.8\u0301/new", "88.118.8 /new",
                                   "88/new"])  # fmt: skip
def test_create_under_a_prefix_not_homed_refused_for_everyone(authz, handle):
    for who in (ENT, SRV, OPS):
        assert "not homed here" in refused(authz, who, Op.CREATE_HANDLE, handle)


def test_existing_handle_under_a_prefix_not_homed(authz):
    # no creation (not even an overwrite by the handle's own admins) where the prefix is not
    # homed; deleting such a stray record stays possible through its own HS_ADMIN
    msg = refused(authz, ENT, Op.CREATE_HANDLE, "88.118.7/orphan", touched=[v(1, "URL", "x")])
    assert "not homed here" in msg
    authz.check(ENT, Op.DELETE_HANDLE, "88.118.7/orphan")


def test_create_with_prefix_admins_disabled(lookup):
    authz = Authorizer(lookup, SERVER_ADMINS, allow_na_admins=False)
    assert "disabled" in refused(authz, ENT, Op.CREATE_HANDLE, "88.118.8/new")
    authz.check(SRV, Op.CREATE_HANDLE, "88.118.8/new")
    authz.check(OPS, Op.CREATE_HANDLE, "88.118.9/new")


def test_server_admin_full_access_switch(lookup):
    full = Authorizer(lookup, SERVER_ADMINS)
    full.check(SRV, Op.CREATE_HANDLE, "88.118.9/new")
    full.check(OPS, Op.MODIFY_VALUE, "88.118.8/dev-2",
               touched=[adm(100, "88.118/OPS", 300, ALL_PERMS)])  # fmt: skip
    full.check(SRV, Op.DELETE_HANDLE, "88.118.9/thing")
    full.check(SRV, Op.READ_VALUE, "88.118.8/dev-1")
    limited = Authorizer(lookup, SERVER_ADMINS, server_admin_full_access=False)
    assert "ADD_HANDLE" in refused(limited, SRV, Op.CREATE_HANDLE, "88.118.9/new")
    assert "MODIFY_ADMIN" in refused(limited, OPS, Op.MODIFY_VALUE, "88.118.8/dev-2",
                                     touched=[adm(100, "88.118/OPS", 300, ALL_PERMS)])
    refused(limited, SRV, Op.DELETE_HANDLE, "88.118.9/thing")
    limited.check(SRV, Op.HOME_NA, "88.118.77")  # homing stays theirs


def test_create_over_an_existing_handle(authz, lookup):
    existing = lookup("88.118.8/split")
    new_url = [v(1, "URL", "https://example.com/changed"), *existing[1:]]
    outsider = Identity.parse("300:88.118.9/ADMIN")
    refused(authz, outsider, Op.CREATE_HANDLE, "88.118.8/split", touched=new_url)
    # ENT is a prefix admin with ADD_HANDLE anyway; check the handle's own admins alone:
    no_na = Authorizer(lookup, allow_na_admins=False)
    no_na.check(ENT, Op.CREATE_HANDLE, "88.118.8/split", touched=new_url)  # MODIFY_VALUE
    no_na.check(ENT, Op.CREATE_HANDLE, "88.118.8/split", touched=list(existing))  # no change
    # replacing a value by an HS_ADMIN needs MODIFY_VALUE+ADD_ADMIN in ONE value: value 101's
    # ADD_ADMIN alone no longer lets the whole record be replaced (departure 1, module doc)
    refused(no_na, ENT, Op.CREATE_HANDLE, "88.118.8/split",
            touched=[adm(1, "88.118.8/ADMIN", 300, 1), *existing[1:]])  # fmt: skip
    # dev-2 grants ENT DELETE_HANDLE only: no replacement through it (departure 1)
    refused(no_na, ENT, Op.CREATE_HANDLE, "88.118.8/dev-2", touched=[adm(100, "x/y", 1, 0xFFF)])
    refused(no_na, ENT, Op.CREATE_HANDLE, "88.118.8/lower-admin", touched=[v(1, "URL", "z")])
    # and the prefix's ADD_HANDLE is no way to replace a handle either
    refused(authz, ENT, Op.CREATE_HANDLE, "88.118.8/dev-2", touched=[adm(100, "x/y", 1, 0xFFF)])


def test_create_prefix_handle_is_adding_a_derived_prefix(authz):
    authz.check(TOP, Op.CREATE_HANDLE, "0.NA/88.118.10")
    authz.check(TOP, Op.CREATE_HANDLE, "88.118.10")  # a slashless name is its prefix handle
    msg = refused(authz, ENT, Op.CREATE_HANDLE, "0.NA/88.118.10")
    assert "ADD_DERIVED_PREFIX" in msg and "0.NA/88.118" in msg
    assert "ADD_DERIVED_PREFIX" in refused(authz, ENT, Op.CREATE_HANDLE, "0.NA/88.118.8.1")
    # a top-level prefix handle has no parent: homing it is for server admins
    authz.check(SRV, Op.CREATE_HANDLE, "0.NA/89")
    assert "server admin" in refused(authz, TOP, Op.CREATE_HANDLE, "0.NA/89")


# -- check: derived prefixes, listing, homing ----------------------------------------------


def test_derived_prefix_operations(authz):
    for op in (Op.ADD_DERIVED_PREFIX, Op.DELETE_DERIVED_PREFIX):
        authz.check(TOP, op, "88.118.10")
        authz.check(TOP, op, "0.na/88.118.10")
        authz.check(SRV, op, "88.118.10")
        assert op.name in refused(authz, ENT, op, "88.118.10")
        assert op.name in refused(authz, ENT, op, "88.118.8.1")  # ENT_NA has no derived bits
        assert "not homed" in refused(authz, TOP, op, "88.119.1")
        assert "not a derived prefix" in refused(authz, SRV, op, "88")
    with pytest.raises(InvalidIdentifier):
        authz.check(TOP, Op.ADD_DERIVED_PREFIX, "88.118/10")
    with pytest.raises(InvalidIdentifier):
        authz.check(TOP, Op.ADD_DERIVED_PREFIX, "0.NA/88..10")


def test_list_handles(lookup, authz):
    authz.check(ENT, Op.LIST_HANDLES, "88.118.8")
    authz.check(ENT, Op.LIST_HANDLES, "0.NA/88.118.8")
    authz.check(SRV, Op.LIST_HANDLES, "88.118.9")
    assert "LIST_HANDLES" in refused(authz, ENT, Op.LIST_HANDLES, "88.118.9")
    assert "not homed" in refused(authz, ENT, Op.LIST_HANDLES, "88.118.7")
    refused(Authorizer(lookup, allow_na_admins=False), ENT, Op.LIST_HANDLES, "88.118.8")
    with pytest.raises(InvalidIdentifier):
        authz.check(ENT, Op.LIST_HANDLES, "88.118.8/dev-1")


@pytest.mark.parametrize("op", [Op.HOME_NA, Op.UNHOME_NA])
def test_homing_is_for_server_admins_only(authz, op):
    authz.check(SRV, op, "88.118.77")
    authz.check(OPS, op, "0.NA/88.118.8")
    assert "server admins only" in refused(authz, TOP, op, "88.118.77")
    refused(authz, ENT, op, "88.118.8")
    with pytest.raises(InvalidIdentifier):
        authz.check(SRV, op, "88.118.8/x")


# -- check: handle-level rules -------------------------------------------------------------


def test_delete_handle(authz):
    authz.check(ENT, Op.DELETE_HANDLE, "88.118.8/dev-1")
    authz.check(ENT, Op.DELETE_HANDLE, "88.118.8/DEV-1")
    assert "DELETE_HANDLE" in refused(authz, ENT, Op.DELETE_HANDLE, "88.118.8/split")
    refused(authz, OUT, Op.DELETE_HANDLE, "88.118.8/dev-1")
    refused(authz, ENT9, Op.DELETE_HANDLE, "88.118.8/dev-1")
    refused(authz, ENT, Op.DELETE_HANDLE, "88.118.8/missing")
    authz.check(ENT9, Op.DELETE_HANDLE, "88.118.9/thing")


def test_read_value(authz):
    authz.check(ENT, Op.READ_VALUE, "88.118.8/dev-1")  # 0x7F3 includes READ_VALUE
    authz.check(ALICE, Op.READ_VALUE, "88.118.8/group-doc")  # through team → G-A → G-B
    assert "READ_VALUE" in refused(authz, ENT, Op.READ_VALUE, "88.118.8/dev-2")
    refused(authz, OUT, Op.READ_VALUE, "88.118.8/dev-1")


def test_value_ops_on_non_admin_values(authz):
    authz.check(ENT, Op.ADD_VALUE, "88.118.8/dev-2", touched=[v(5, "URL", "https://x")])
    authz.check(ENT, Op.REMOVE_VALUE, "88.118.8/dev-2", touched=[v(1, "URL", "")])
    authz.check(ENT, Op.MODIFY_VALUE, "88.118.8/dev-2", touched=[v(1, "URL", "https://y")])
    for op in (Op.ADD_VALUE, Op.REMOVE_VALUE, Op.MODIFY_VALUE):
        authz.check(ENT, op, "88.118.8/dev-2")  # no touched values: the plain bit
        assert op.name in refused(authz, OUT, op, "88.118.8/dev-2")
        refused(authz, ENT9, op, "88.118.8/dev-2", touched=[v(1, "URL", "z")])


@pytest.mark.parametrize("op,touched,bit", [
    (Op.ADD_VALUE, [adm(101, "88.118.8/NOBODY", 300, ALL_PERMS)], "ADD_ADMIN"),
    (Op.REMOVE_VALUE, [v(100, "HS_ADMIN", b"")], "REMOVE_ADMIN"),
    (Op.MODIFY_VALUE, [adm(100, "88.118.8/NOBODY", 300, ALL_PERMS)], "MODIFY_ADMIN"),
    (Op.MODIFY_VALUE, [v(100, "URL", "admin → plain")], "REMOVE_ADMIN"),
    (Op.MODIFY_VALUE, [adm(1, "88.118.8/NOBODY", 300, ALL_PERMS)], "ADD_ADMIN"),
])  # fmt: skip
def test_hs_admin_changes_need_admin_bits(authz, op, touched, bit):
    # dev-2 grants ENT the *_VALUE bits only; dev-1 (0x7F3) grants the *_ADMIN bits too
    assert bit in refused(authz, ENT, op, "88.118.8/dev-2", touched=touched)
    authz.check(ENT, op, "88.118.8/dev-1", touched=touched)


def test_removal_counts_the_stored_type_not_the_claimed_one(authz):
    msg = refused(authz, ENT, Op.REMOVE_VALUE, "88.118.8/dev-2", touched=[v(100, "URL", "")])
    assert "REMOVE_ADMIN" in msg


def test_one_hs_admin_value_must_grant_every_needed_bit(authz, lookup):
    # split: 100 grants MODIFY_VALUE, 101 grants ADD_ADMIN|REMOVE_ADMIN — to the same identity
    assert needed_for_values(Op.MODIFY_VALUE, lookup("88.118.8/split"),
                             [adm(1, "88.118.8/ADMIN", 300, 1)]) == P.MODIFY_VALUE | P.ADD_ADMIN
    msg = refused(authz, ENT, Op.MODIFY_VALUE, "88.118.8/split",
                  touched=[adm(1, "88.118.8/ADMIN", 300, 1)])  # fmt: skip
    assert "no single HS_ADMIN value" in msg
    authz.check(ENT, Op.MODIFY_VALUE, "88.118.8/split", touched=[v(1, "URL", "y")])
    authz.check(ENT, Op.REMOVE_VALUE, "88.118.8/split", touched=[v(101, "HS_ADMIN", b"")])


def test_read_only_and_public_write_values(authz):
    msg = refused(authz, SRV, Op.MODIFY_VALUE, "88.118.8/dev-2", touched=[v(4, "FROZEN", "z")])
    assert "read-only" in msg
    # public write: any authenticated identity may modify it, nobody anonymously
    authz.check(OUT, Op.MODIFY_VALUE, "88.118.8/dev-2", touched=[v(3, "NOTE", "edited")])
    with pytest.raises(AuthenticationNeeded):
        authz.check(None, Op.MODIFY_VALUE, "88.118.8/dev-2", touched=[v(3, "NOTE", "edited")])
    # ... but turning it into an HS_ADMIN is an admin change
    refused(authz, OUT, Op.MODIFY_VALUE, "88.118.8/dev-2",
            touched=[adm(3, "88.118.8/NOBODY", 300, ALL_PERMS)])  # fmt: skip


def test_add_over_an_existing_index_is_a_modification(authz, lookup):
    dev2 = lookup("88.118.8/dev-2")
    # identical (timestamp aside) → nothing needed; different → MODIFY_VALUE
    assert needed_for_values(Op.ADD_VALUE, dev2, [dev2[0].replace(timestamp=5)]) == Perm(0)
    assert needed_for_values(Op.ADD_VALUE, dev2, [v(1, "URL", "new")]) == P.MODIFY_VALUE
    assert needed_for_values(Op.MODIFY_VALUE, dev2, [v(9, "URL", "new")]) == P.ADD_VALUE
    lower = Authorizer(lookup)  # lower-admin grants ENT (as "88.118.8/admin") ADD_VALUE only
    lower.check(ENT, Op.ADD_VALUE, "88.118.8/lower-admin", touched=[v(2, "URL", "new")])
    assert "MODIFY_VALUE" in refused(lower, ENT, Op.ADD_VALUE, "88.118.8/lower-admin",
                                     touched=[v(1, "URL", "changed")])


def test_needed_for_replace():
    old = [v(1, "URL", "a"), adm(100, "x/y", 1, 1), v(2, "EMAIL", "e")]
    assert needed_for_replace(old, old) == Perm(0)
    assert needed_for_replace(old, []) == P.REMOVE_VALUE | P.REMOVE_ADMIN
    assert needed_for_replace([], old) == P.ADD_VALUE | P.ADD_ADMIN
    assert needed_for_replace(old, [v(1, "URL", "b"), adm(100, "x/y", 1, 3), old[2]]) \
        == P.MODIFY_VALUE | P.MODIFY_ADMIN  # fmt: skip


def test_explicit_record_is_used_instead_of_a_lookup(authz, lookup):
    record = Record([adm(100, "88.118.8/NOBODY", 300, P.DELETE_HANDLE)])
    lookup.calls.clear()
    authz.check(OUT, Op.DELETE_HANDLE, "88.118.8/dev-1", record=record)
    assert "88.118.8/DEV-1" not in lookup.calls
    refused(authz, ENT, Op.DELETE_HANDLE, "88.118.8/dev-1", record=record)


# -- check: the prefix handle itself ---------------------------------------------------------


@pytest.mark.parametrize("handle", ["0.NA/88.118.8", "0.na/88.118.8", "88.118.8"])
def test_changing_the_own_prefix_handle_within_its_rights(authz, handle):
    # ENT_NA grants ADD/REMOVE/MODIFY_VALUE but none of the *_ADMIN bits
    authz.check(ENT, Op.ADD_VALUE, handle, touched=[v(2, "HS_SITE.6", b"\x00")])
    authz.check(ENT, Op.MODIFY_VALUE, handle, touched=[v(1, "HS_SITE", b"\x00")])
    assert "MODIFY_ADMIN" in refused(authz, ENT, Op.MODIFY_VALUE, handle,
                                     touched=[adm(100, "88.118.8/ADMIN", 300, ALL_PERMS)])
    assert "ADD_ADMIN" in refused(authz, ENT, Op.ADD_VALUE, handle,
                                  touched=[adm(101, "88.118.8/ADMIN", 300, ALL_PERMS)])
    assert "REMOVE_ADMIN" in refused(authz, ENT, Op.REMOVE_VALUE, handle,
                                     touched=[v(100, "HS_ADMIN", b"")])
    assert "READ_VALUE" in refused(authz, ENT, Op.READ_VALUE, handle)


def test_prefix_handles_of_others_cannot_be_changed(authz):
    for handle in ("0.NA/88.118.9", "0.NA/88.118.88", "0.NA/88.118", "88.118.9"):
        for op in (Op.ADD_VALUE, Op.MODIFY_VALUE, Op.REMOVE_VALUE, Op.DELETE_HANDLE):
            refused(authz, ENT, op, handle, touched=[v(1, "HS_SITE", b"\x00")])
    refused(authz, ENT9, Op.MODIFY_VALUE, "0.NA/88.118.8", touched=[v(1, "HS_SITE", b"\x00")])
    authz.check(ENT9, Op.MODIFY_VALUE, "0.NA/88.118.9", touched=[v(1, "HS_SITE", b"\x00")])


def test_case_sensitive_mode_keeps_suffix_case(lookup):
    strict = Authorizer(lookup, case_sensitive=True)
    assert strict.is_member(ENT, ENT)
    assert not strict.is_member(Identity.parse("300:88.118.8/admin"), ENT)
    assert strict.is_member(Identity.parse("300:88.118.8/ADMIN"), Identity(300, "88.118.8/ADMIN"))
