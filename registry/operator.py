"""The node operator's tools: enterprise prefixes and their admin identities.

What a secondary node's operator does when an enterprise joins (idis.md §1.4: prefix allocated
after review) or leaves: create the prefix with its admin identity, list and show prefixes,
disable and re-enable one, add and rotate identity keys.  The CLI (``registry.operator_cli``)
runs these as the local ``OPERATOR``; the REST endpoints (``resolver.servers.http_operator``)
run them for an authenticated identity, which must be a server admin (``[node]
server_admins``, directly or through HS_VLIST groups).  Every write is one store transaction
that also checks the caller's rights in it, and is logged with the caller's identity (empty for
the operator) and op 0 ("operator tool").

What ``create_prefix("88.118.9", "Example Co")`` writes, in one transaction::

    0.NA/88.118.9  (prefixes)   100 HS_ADMIN  group 200:0.NA/88.118.9, every right but
                                              LIST_HANDLES (0x7FF, registry.prefixes)
                                200 HS_VLIST  [300:88.118.9/ADMIN]
                                 10 ORG       "Example Co"  (ORG_TYPE below says why)
    88.118.9/ADMIN (records)    100 HS_ADMIN  group 200:0.NA/88.118.9, 0x7FF
                                300 HS_SECKEY 43 characters of URL-safe base64 (32 random
                                              bytes), admin read/write only (1100); returned
                                              once and never stored elsewhere
                                    or HS_PUBKEY  the given RSA public key (public read)

So ``300:88.118.9/ADMIN`` may create, change and delete identifiers under ``88.118.9`` and
derived prefixes of it (handle.md §5), and administers its own identity handle.  The HS_SECKEY
data is the secret text itself: REST Basic authentication compares the password with those
bytes, and the native challenge answers are keyed by them (handle.md §5, §7.3).

Rules:

* The operator may create any prefix, top-level included (the node's own ``88.118`` on a fresh
  store).  A server admin may create only a derived prefix of a prefix homed here (the
  authorizer's ADD_DERIVED_PREFIX rule); nobody creates prefixes under ``0`` (the global
  service's, handle.md §1).  A prefix homed or disabled here, or an existing
  ``<prefix>/ADMIN``, is ``AlreadyExists``.
* Disabling moves the prefix handle aside (``LmdbStore.disable_prefix``, schema.DISABLED):
  every front-end then answers identifiers under it as "not here" (Handle RC 301, HTTP 400
  rc 301), as for any prefix not homed, and writes under it are refused (``NotResponsible``).
  Records stay; enabling brings everything back unchanged.  Derived prefixes are homed on their
  own and are not disabled with their parent.
* ``identity_rotate`` replaces the secret at once: the next authentication with the old secret
  fails.  (A REST session cookie issued before lives until it expires — ``registry.sessions``.)
* Secrets appear only in the return value; nothing here logs or stores them anywhere else.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Callable, Iterable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from registry.authz import Identity, Op
from registry.identities import PUBLIC_KEY, SECRET_KEY
from registry.prefixes import PREFIX_ADMIN_PERMISSIONS
from registry.service import OPERATOR, Registry
from resolver.errors import (
    AlreadyExists, AuthenticationNeeded, Forbidden, HandleNotFound, InvalidIdentifier,
    InvalidValue, NoSuchValue, ValueExists,
)  # fmt: skip
from resolver.identifier import NA_PREFIX, Identifier
from resolver.protocols.handle.auth import rsa_public_key_bytes
from resolver.record import Record, pack, unpack
from resolver.store import Change
from resolver.store.lmdb_store import LmdbStore
from resolver.values import (
    ADMIN_TYPE, PERM_ADMIN_READ, PERM_ADMIN_WRITE, VLIST_TYPE, AdminRecord, HandleValue,
    decode_vlist, encode_vlist,
)  # fmt: skip
from resolver.valuejson import admin_permissions_text, value_to_json

#: The organisation a prefix was allocated to, on its prefix handle.  Not ``HS_ORG``: ``HS_*``
#: names belong to the Handle System's own types, which clients and servers interpret
#: (HS_SITE, HS_ADMIN, ...), and an invented one would look normative.  IDIS names the
#: organisation ``org`` (the claim of HS_CERT, idis.md §1.6); a plain UTF-8, publicly readable
#: ``ORG`` value shows it to every resolver and to ``idnode prefix show``.
ORG_TYPE = "ORG"
#: Index of the ORG value: clear of 1 (HS_SITE / main URL), 100–199 (HS_ADMIN), 200 (HS_VLIST)
#: and 300 (keys) — handle.md §2.1 conventional indexes.
ORG_INDEX = 10
ADMIN_INDEX = 100  # HS_ADMIN on the prefix handle and on the identity handle
GROUP_INDEX = 200  # HS_VLIST admin group on the prefix handle
DEFAULT_KEY_INDEX = 300  # idis.md §1.3: 300 is the identity key (300:88.111.1/admin)
ADMIN_SUFFIX = "ADMIN"
SECRET_BYTES = 32
SECRET_PERMISSIONS = PERM_ADMIN_READ | PERM_ADMIN_WRITE  # 1100: never publicly readable
MAX_ORG_BYTES = 1024
MAX_INDEX = 0x7FFFFFFF
#: Groups followed when ``show_prefix`` lists the members of an admin group.
MAX_GROUP_LOOKUPS = 64


@dataclasses.dataclass(frozen=True, slots=True)
class AdminEntry:
    """One HS_ADMIN value of a prefix handle, with the identities its reference reaches."""

    index: int  # of the HS_ADMIN value
    handle: str  # the reference it names (``0.NA/88.118.9``)
    admin_index: int  # its index (200: the group)
    permissions: int
    members: tuple[str, ...]  # identities reached through HS_VLIST groups (or the reference)

    def to_json(self) -> dict:
        return {"index": self.index, "handle": self.handle, "adminIndex": self.admin_index,
                "permissions": admin_permissions_text(self.permissions),
                "members": list(self.members)}  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class PrefixInfo:
    """A prefix of this node, homed (``enabled``) or disabled."""

    prefix: str
    enabled: bool
    org: str | None
    values: tuple[HandleValue, ...] = ()  # the prefix handle's record (show only)
    admins: tuple[AdminEntry, ...] = ()  # (show only)
    identifiers: int | None = None  # handles under the prefix (show only; a full key scan)

    def to_json(self) -> dict:
        out: dict = {"prefix": self.prefix, "enabled": self.enabled, "org": self.org}
        if self.identifiers is not None:
            out["identifiers"] = self.identifiers
            out["admins"] = [a.to_json() for a in self.admins]
            out["values"] = [value_to_json(v) for v in self.values]
        return out


def new_secret() -> str:
    """32 random bytes as URL-safe base64 without padding (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def public_key_value_data(pem: bytes | str) -> bytes:
    """HS_PUBKEY data of an RSA public key given in PEM (``InvalidValue`` otherwise)."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else bytes(pem)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidValue("not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    try:
        return rsa_public_key_bytes(key)
    except ValueError:
        raise InvalidValue(f"only RSA public keys are supported, not "
                           f"{type(key).__name__.lstrip('_')}") from None  # fmt: skip


def _index(index: int, what: str = "index") -> int:
    if type(index) is not int or not 0 < index <= MAX_INDEX:
        raise InvalidValue(f"{what} must be between 1 and {MAX_INDEX}")
    return index


def _org(org: str) -> str:
    if not isinstance(org, str) or not org.strip():
        raise InvalidValue("the organisation name must not be empty")
    org = org.strip()
    if len(org.encode("utf-8")) > MAX_ORG_BYTES:
        raise InvalidValue(f"the organisation name is longer than {MAX_ORG_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in org):
        raise InvalidValue("the organisation name contains a control character")
    return org


def _who(identity) -> str:
    return "" if identity is None or identity is OPERATOR else str(identity)


class Operator:
    """The operator tools over one registration service (its store, server admins and case
    rule).  Every method takes ``identity``: ``OPERATOR`` (default; the local CLI) or an
    authenticated ``Identity``, which must be a server admin (else ``Forbidden``; ``None``:
    ``AuthenticationNeeded``)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store: LmdbStore = registry.store

    # -- who ---------------------------------------------------------------------------------
    def is_server_admin(self, identity) -> bool:
        """Is ``identity`` a server admin (directly or through HS_VLIST groups)?"""
        if identity is OPERATOR:
            return True
        if identity is None:
            return False
        with self.store.view() as view:
            return self.registry._authorizer(view).is_server_admin(identity)

    def _require(self, view, identity) -> None:
        """Inside a transaction: the caller must be the operator or a server admin."""
        if identity is OPERATOR:
            return
        if identity is None:
            raise AuthenticationNeeded("Authentication needed")
        if not self.registry._authorizer(view).is_server_admin(identity):
            raise Forbidden(f"{identity} may not administer prefixes: server admins only")

    # -- names -------------------------------------------------------------------------------
    def prefix_key(self, prefix: str) -> bytes:
        """The normalised prefix (``prefixes`` key) of ``88.118.9`` or ``0.NA/88.118.9``."""
        if not isinstance(prefix, str):
            raise InvalidIdentifier("a prefix is text")
        name = prefix[len(NA_PREFIX) + 1 :] if prefix.upper().startswith("0.NA/") else prefix
        if not name or "/" in name:
            raise InvalidIdentifier(f"{prefix[:64]!r} is not a prefix")
        ident = Identifier.parse(name)  # a slashless name is 0.NA/<name>: prefix syntax rules
        key = ident.suffix_key
        if key == b"0" or key.startswith(b"0."):
            raise InvalidIdentifier("prefixes under 0 belong to the global service (0.NA)")
        return key

    # -- prefixes ----------------------------------------------------------------------------
    def create_prefix(self, prefix: str, org: str, *, pubkey_pem: bytes | str | None = None,
                      admin_index: int = DEFAULT_KEY_INDEX,
                      identity=OPERATOR) -> tuple[Identity, str | None]:  # fmt: skip
        """Create ``0.NA/<prefix>`` and ``<prefix>/ADMIN`` (module docstring) in one
        transaction.  Returns the admin identity and its secret — the only copy handed out —
        or ``None`` when ``pubkey_pem`` gave a public key instead."""
        key = self.prefix_key(prefix)
        name = key.decode("utf-8")
        org = _org(org)
        _index(admin_index, "admin index")
        if admin_index == ADMIN_INDEX:
            raise InvalidValue(f"admin index {ADMIN_INDEX} holds the identity's HS_ADMIN")
        secret = None if pubkey_pem is not None else new_secret()
        key_value = self._key_value(admin_index, secret, pubkey_pem)
        admin_ident = self.registry.parse(f"{name}/{ADMIN_SUFFIX}")
        group = AdminRecord(f"{NA_PREFIX}/{name}", GROUP_INDEX, PREFIX_ADMIN_PERMISSIONS)
        now = int(self.registry.clock())
        na = Record([
            HandleValue(ORG_INDEX, ORG_TYPE, org.encode("utf-8"), timestamp=now),
            HandleValue(ADMIN_INDEX, ADMIN_TYPE, group.to_bytes(), timestamp=now),
            HandleValue(GROUP_INDEX, VLIST_TYPE,
                        encode_vlist([(admin_ident.text, admin_index)]), timestamp=now),
        ]).validate()  # fmt: skip
        ident_record = Record([
            HandleValue(ADMIN_INDEX, ADMIN_TYPE, group.to_bytes(), timestamp=now),
            dataclasses.replace(key_value, timestamp=now),
        ]).validate()  # fmt: skip

        def plan(view):
            self._require(view, identity)
            if view.get_prefix(key) is not None:
                raise AlreadyExists(f"prefix {name} is already homed here")
            if view.get_disabled(key) is not None:
                raise AlreadyExists(f"prefix {name} exists here, disabled (prefix enable)")
            if view.get_record(admin_ident.key) is not None:
                raise AlreadyExists(f"{admin_ident.text} already exists")
            if identity is not OPERATOR:
                # A server admin creates derived prefixes of prefixes homed here only: the
                # authorizer's rule (the parent must be homed; no top-level prefix).
                self.registry._authorizer(view).check(identity, Op.ADD_DERIVED_PREFIX,
                                                      f"{NA_PREFIX}/{name}")  # fmt: skip
            return [Change(key, pack(na), prefix=True),
                    Change(admin_ident.key, pack(ident_record))]  # fmt: skip

        self.store.update(plan, _who(identity))
        return Identity(admin_index, admin_ident.text), secret

    def list_prefixes(self, *, identity=OPERATOR) -> list[PrefixInfo]:
        """Every prefix homed or disabled here, in key order."""
        with self.store.view() as view:
            self._require(view, identity)
            out = []
            for key in view.prefixes():
                out.append(self._info(key, view.get_prefix(key), True))
            for key in view.disabled_prefixes():
                out.append(self._info(key, view.get_disabled(key), False))
        return sorted(out, key=lambda p: p.prefix)

    def show_prefix(self, prefix: str, *, identity=OPERATOR) -> PrefixInfo:
        """The prefix handle's values, organisation, admins (with group members), number of
        identifiers under it and whether it is enabled.  ``HandleNotFound`` if unknown."""
        key = self.prefix_key(prefix)
        with self.store.view() as view:
            self._require(view, identity)
            blob, enabled = view.get_prefix(key), True
            if blob is None:
                blob, enabled = view.get_disabled(key), False
            if blob is None:
                raise HandleNotFound(f"prefix {key.decode('utf-8')} is not homed here")
            record = unpack(bytes(blob))
            lookup = self._lookup(view)
            admins = tuple(self._admin_entries(record, lookup))
            total, _ = view.list_keys(key, 0, 0)
        info = self._info(key, blob, enabled, record)
        return dataclasses.replace(info, values=tuple(record), admins=admins, identifiers=total)

    def disable_prefix(self, prefix: str, *, identity=OPERATOR) -> int:
        """Stop serving ``prefix`` (module docstring); returns the change-log id, 0 when it
        was already disabled.  ``HandleNotFound`` if it is neither homed nor disabled."""
        key = self.prefix_key(prefix)
        return self.store.disable_prefix(key, _who(identity),
                                         lambda view: self._require(view, identity))  # fmt: skip

    def enable_prefix(self, prefix: str, *, identity=OPERATOR) -> int:
        """Serve a disabled prefix again; returns the change-log id, 0 if it was enabled."""
        key = self.prefix_key(prefix)
        return self.store.enable_prefix(key, _who(identity),
                                        lambda view: self._require(view, identity))  # fmt: skip

    # -- identities --------------------------------------------------------------------------
    def identity_add(self, handle: str, index: int, *, pubkey_pem: bytes | str | None = None,
                     identity=OPERATOR) -> tuple[Identity, str | None]:  # fmt: skip
        """Add an HS_SECKEY (a new secret, returned once) or, with ``pubkey_pem``, an HS_PUBKEY
        at ``index`` of an existing handle under a prefix held here.  ``ValueExists`` if the
        index is taken."""
        _index(index)
        secret = None if pubkey_pem is not None else new_secret()
        value = self._key_value(index, secret, pubkey_pem)
        ident = self.registry.parse(handle)

        def plan(view):
            self._require(view, identity)
            old = self.registry._existing(view, ident)
            if any(v.index == index for v in old):
                raise ValueExists(f"Value already exists at index {index}")
            new = Record(list(old) + self.registry._stamp([value])).validate()
            return [_change(ident, pack(new))]

        self.store.update(plan, _who(identity))
        return Identity(index, ident.text), secret

    def identity_rotate(self, handle: str, index: int, *,
                        identity=OPERATOR) -> tuple[Identity, str]:  # fmt: skip
        """Replace the HS_SECKEY at ``index`` by a new secret (returned once); the old one
        fails from the next authentication on.  ``NoSuchValue`` if there is no value there,
        ``InvalidValue`` if it is not an HS_SECKEY."""
        _index(index)
        secret = new_secret()
        ident = self.registry.parse(handle)

        def plan(view):
            self._require(view, identity)
            old = self.registry._existing(view, ident)
            current = next((v for v in old if v.index == index), None)
            if current is None:
                raise NoSuchValue(f"No value at index {index}")
            if not current.has_type(SECRET_KEY):
                raise InvalidValue(f"the value at index {index} is {current.type[:32]}, not "
                                   f"{SECRET_KEY}: only secret keys are rotated")  # fmt: skip
            (fresh,) = self.registry._stamp([current.replace(data=secret.encode("ascii"))])
            new = Record(fresh if v.index == index else v for v in old).validate()
            return [_change(ident, pack(new))]

        self.store.update(plan, _who(identity))
        return Identity(index, ident.text), secret

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _key_value(index: int, secret: str | None, pubkey_pem) -> HandleValue:
        if secret is not None:
            return HandleValue(index, SECRET_KEY, secret.encode("ascii"),
                               permissions=SECRET_PERMISSIONS)  # fmt: skip
        return HandleValue(index, PUBLIC_KEY, public_key_value_data(pubkey_pem))

    def _info(self, key: bytes, blob, enabled: bool, record: Record | None = None) -> PrefixInfo:
        record = unpack(bytes(blob)) if record is None else record
        org = next((v.data.decode("utf-8", "replace") for v in record if v.has_type(ORG_TYPE)),
                   None)  # fmt: skip
        return PrefixInfo(key.decode("utf-8", "replace"), enabled, org)

    def _lookup(self, view) -> Callable[[bytes], Record | None]:
        """Records by normalised handle key; prefix handles homed or disabled."""

        def lookup(key: bytes) -> Record | None:
            if key.startswith(b"0.NA/"):
                blob = view.get_prefix(key[5:]) or view.get_disabled(key[5:])
            else:
                blob = view.get_record(key)
            return None if blob is None else unpack(bytes(blob))

        return lookup

    def _ref_key(self, handle: str) -> bytes | None:
        try:
            return self.registry.parse(handle).key
        except InvalidIdentifier:
            return None

    def _admin_entries(self, record: Iterable[HandleValue], lookup) -> Iterable[AdminEntry]:
        for v in record:
            if not v.has_type(ADMIN_TYPE):
                continue
            try:
                a = AdminRecord.from_bytes(v.data)
            except InvalidValue:
                continue
            members = self._members(a.handle, a.index, lookup)
            yield AdminEntry(v.index, a.handle, a.index, a.permissions & 0xFFF,
                             tuple(members))  # fmt: skip

    def _members(self, handle: str, index: int, lookup) -> list[str]:
        """The identities ``index:handle`` stands for: itself, or the members of the HS_VLIST
        group it names, recursively (breadth first, each reference once, bounded)."""
        out: list[str] = []
        queue, seen, lookups = [(handle, index)], set(), 0
        while queue:
            h, i = queue.pop(0)
            ref = (self._ref_key(h), i)
            if ref in seen or ref[0] is None:
                continue
            seen.add(ref)
            group = None
            if i != 0 and lookups < MAX_GROUP_LOOKUPS:
                lookups += 1
                rec = lookup(ref[0])
                group = next((v for v in rec or () if v.index == i and v.has_type(VLIST_TYPE)),
                             None)  # fmt: skip
            if group is None:
                out.append(f"{i}:{h}")
                continue
            try:
                queue.extend(decode_vlist(group.data))
            except InvalidValue:
                continue
        return out


def _change(ident: Identifier, blob: bytes) -> Change:
    if ident.is_prefix_handle:
        return Change(ident.suffix_key, blob, prefix=True)
    return Change(ident.key, blob)


# -- the functions of the operator CLI, over a store or a registration service ------------------


def operator_for(registry_or_store: Registry | LmdbStore) -> Operator:
    if isinstance(registry_or_store, Registry):
        return Operator(registry_or_store)
    return Operator(Registry(registry_or_store))


def create_prefix(registry_or_store, prefix: str, org: str, *, pubkey_pem=None,
                  admin_index: int = DEFAULT_KEY_INDEX) -> tuple[Identity, str | None]:  # fmt: skip
    return operator_for(registry_or_store).create_prefix(prefix, org, pubkey_pem=pubkey_pem,
                                                         admin_index=admin_index)  # fmt: skip


def list_prefixes(registry_or_store) -> list[PrefixInfo]:
    return operator_for(registry_or_store).list_prefixes()


def show_prefix(registry_or_store, prefix: str) -> PrefixInfo:
    return operator_for(registry_or_store).show_prefix(prefix)


def disable_prefix(registry_or_store, prefix: str) -> int:
    return operator_for(registry_or_store).disable_prefix(prefix)


def enable_prefix(registry_or_store, prefix: str) -> int:
    return operator_for(registry_or_store).enable_prefix(prefix)


def identity_add(registry_or_store, handle: str, index: int, *,
                 pubkey_pem=None) -> tuple[Identity, str | None]:  # fmt: skip
    return operator_for(registry_or_store).identity_add(handle, index, pubkey_pem=pubkey_pem)


def identity_rotate(registry_or_store, handle: str, index: int) -> tuple[Identity, str]:
    return operator_for(registry_or_store).identity_rotate(handle, index)
