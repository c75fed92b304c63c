"""Registration: create, change, delete, read and list identifiers for authenticated identities.

The Handle.net operations (handle.md §3.3, §7.1) over the store, authorized by the HS_ADMIN
model (``registry.authz``) and logged in the change log with the acting identity.  Front-ends
(REST, native protocol, CLI) parse their requests into the calls below and map the
``IdnodeError`` outcomes to their codes; nothing here knows a protocol.

Every call is one ``store.update`` transaction: the authorization reads the snapshot the write
replaces, so no other writer can slip between check and write (LMDB serialises writers across
processes).  Timestamps of written values are set here, by the server (handle.md §7.2).

Identities are ``registry.authz.Identity``; ``None`` is an unauthenticated caller.  Operator
tools pass ``OPERATOR``, which acts as a server admin and is logged with an empty identity.

Metadata templates (``registry.templates``): every write plan — create (with or without
overwrite), add/modify values, remove values, batch items, delete — runs
``Templates.apply`` in its transaction after the authorization, so an instance is validated on
every write, the permissions of its important and core fields are set, and the unique index
follows it.  Reads go through the one read rule (``resolver.core.grading``): ``read`` returns
the values the identity's ``Reader`` may see given the grades of the record's template.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Callable, Iterable

import orjson

from registry.authz import ALL_PERMS, Authorizer, Identity, Op, Perm
from registry.templates import Templates
from resolver.core.grading import ANONYMOUS, Grade, Reader, filter_values
from resolver.errors import (
    AlreadyExists, AuthenticationNeeded, Forbidden, HandleNotFound, IdnodeError,
    InvalidIdentifier, InvalidValue, MalformedRequest, NoSuchValue, NotResponsible, Outcome,
    ValueExists,
)  # fmt: skip
from resolver.identifier import Identifier, ancestry
from resolver.protocols.handle.constants import OpCode
from resolver.record import Record, pack, unpack
from resolver.store import Change, LoggedChange
from resolver.store.lmdb_store import LmdbStore
from resolver.values import AdminRecord, HandleValue, decode_vlist

#: Items per batch: the IDIS secondary-node batch calls take at most 2000 (idis.md §0, §1.5).
MAX_BATCH = 2000
BATCH_OPS = ("create", "update", "delete")
_IDEM_PREFIX = b"idempotency:"

#: HS_ADMIN rights that make an identity an owner of a handle's core data (``Registry.reader``).
_OWNER_RIGHTS = ALL_PERMS & ~(Perm.READ_VALUE | Perm.LIST_HANDLES)

#: Value types whose data has a structure the authorization depends on (handle.md §2.3).
_STRUCTURED = {"HS_ADMIN": AdminRecord.from_bytes, "HS_VLIST": decode_vlist}

class _Operator:
    """The local operator (CLI tools run on the node): every right, logged with no identity."""

    def __repr__(self) -> str:
        return "OPERATOR"


OPERATOR = _Operator()


@dataclasses.dataclass(frozen=True, slots=True)
class BatchItem:
    """One item of a batch: ``create`` (fails if it exists), ``update`` (replaces the whole
    record of an existing identifier) or ``delete``.  ``error``: the item could not even be
    parsed (its result is that error; nothing else of the batch depends on it)."""

    op: str
    handle: str
    values: tuple[HandleValue, ...] = ()
    error: IdnodeError | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ItemResult:
    handle: str
    outcome: Outcome
    message: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class BatchResult:
    results: tuple[ItemResult, ...]
    txn_id: int  # last change-log id written (0: nothing changed)
    replayed: bool = False  # the answer of an earlier request with the same idempotency key


@dataclasses.dataclass(frozen=True, slots=True)
class WriteResult:
    handle: str  # as the caller wrote it
    created: bool  # the handle did not exist before
    txn_id: int  # last change-log id written; 0: nothing changed


class Registry:
    """The registration service of one store.  ``server_admins`` come from config;
    ``templates``: the store's ``registry.templates.Templates`` (None: one is made with the
    same store, server admins, case rule and clock)."""

    def __init__(self, store: LmdbStore, *, server_admins: Iterable[Identity] = (),
                 case_sensitive: bool = False, allow_anonymous_list: bool = False,
                 clock: Callable[[], float] = time.time,
                 templates: Templates | None = None) -> None:  # fmt: skip
        self.store = store
        self.server_admins = tuple(server_admins)
        self.case_sensitive = case_sensitive
        self.allow_anonymous_list = allow_anonymous_list
        self.clock = clock
        self.templates = templates if templates is not None else Templates(
            store, server_admins=self.server_admins, case_sensitive=case_sensitive, clock=clock)

    # -- helpers -----------------------------------------------------------------------------
    def parse(self, handle: str | bytes) -> Identifier:
        return Identifier.parse(handle, case_sensitive=self.case_sensitive)

    def _authorizer(self, view) -> Authorizer:
        def lookup(text: str) -> Record | None:
            try:
                ident = self.parse(text)
            except InvalidIdentifier:
                return None
            blob = _get(view, ident)
            return None if blob is None else unpack(bytes(blob))

        return Authorizer(lookup, self.server_admins, case_sensitive=self.case_sensitive)

    def _check(self, authz: Authorizer, identity, op: Op, handle: str, **kw) -> None:
        if identity is OPERATOR:
            return
        authz.check(identity, op, handle, **kw)

    def _stamp(self, values: Iterable[HandleValue]) -> list[HandleValue]:
        """Server-side timestamps; the data of admin and group values must decode (an
        undecodable HS_ADMIN would leave a handle that no one administers)."""
        now = int(self.clock())
        out = []
        for v in values:
            decode = _STRUCTURED.get(v.type.upper())
            if decode is not None:
                try:
                    decode(v.data)
                except Exception:  # any failure to decode is the client's malformed value
                    raise InvalidValue(f"{v.type} value at index {v.index} does not decode"
                                       ) from None  # fmt: skip
            out.append(dataclasses.replace(v, timestamp=now))
        return out

    def _held(self, view, ident: Identifier) -> None:
        """The identifier's prefix must be homed here (a new prefix handle: its parent)."""
        if ident.is_prefix_handle:
            if view.get_prefix(ident.suffix_key) is not None:
                return
            if any(view.get_prefix(p) is not None for p in ancestry(ident.suffix_key)[1:]):
                return
        elif view.get_prefix(ident.prefix_key) is not None:
            return
        raise NotResponsible("That prefix doesn't live here")

    def _existing(self, view, ident: Identifier) -> Record:
        """The current record of a handle under a prefix held here; ``HandleNotFound``."""
        self._held(view, ident)
        blob = _get(view, ident)
        if blob is None:
            raise HandleNotFound("Handle not found")
        return unpack(bytes(blob))

    # -- operations --------------------------------------------------------------------------
    def create_handle(self, identity: Identity | None, handle: str, values: Iterable[HandleValue],
                      *, overwrite: bool = False) -> WriteResult:  # fmt: skip
        """OC_CREATE_HANDLE / REST PUT without ``index``: the whole record.  An existing handle
        is replaced only with ``overwrite`` (else ``AlreadyExists``, rc 101), which needs the
        rights to add, remove and modify the values that differ."""
        ident = self.parse(handle)
        new = Record(self._stamp(values)).validate()
        created = False

        def plan(view):
            nonlocal created
            changes, created = self._plan_create(view, identity, ident, new, overwrite)
            return changes

        txn = self.store.update(plan, _who(identity))
        return WriteResult(ident.text, created, txn)

    def _plan_create(self, view, identity, ident: Identifier, new: Record,
                     overwrite: bool) -> tuple[list[Change], bool]:  # fmt: skip
        self._held(view, ident)
        authz = self._authorizer(view)
        old_blob = _get(view, ident)
        if old_blob is None:
            op = Op.ADD_DERIVED_PREFIX if ident.is_prefix_handle else Op.CREATE_HANDLE
            self._check(authz, identity, op, ident.text)
            new = self.templates.apply(view, ident, new, None)
            return [_change(ident, pack(new), OpCode.CREATE_HANDLE)], True
        if not overwrite:
            raise AlreadyExists("Handle already exists")
        old = unpack(bytes(old_blob))
        # create with overwrite (reference rule in registry.authz: the handle's own admins)
        self._check(authz, identity, Op.CREATE_HANDLE, ident.text, record=old,
                    touched=tuple(new))  # fmt: skip
        new = self.templates.apply(view, ident, new, old)
        return [_change(ident, pack(new), OpCode.CREATE_HANDLE)], False

    def delete_handle(self, identity: Identity | None, handle: str) -> WriteResult:
        """OC_DELETE_HANDLE / REST DELETE: needs DELETE_HANDLE (a prefix handle:
        DELETE_DERIVED_PREFIX on its parent, or a server admin)."""
        ident = self.parse(handle)
        plan = lambda view: self._plan_delete(view, identity, ident)  # noqa: E731
        return WriteResult(ident.text, False, self.store.update(plan, _who(identity)))

    def _plan_delete(self, view, identity, ident: Identifier) -> list[Change]:
        old = self._existing(view, ident)
        op = Op.DELETE_DERIVED_PREFIX if ident.is_prefix_handle else Op.DELETE_HANDLE
        self._check(self._authorizer(view), identity, op, ident.text, record=old)
        self.templates.apply(view, ident, None, old)  # frees its unique values
        return [_change(ident, None, OpCode.DELETE_HANDLE)]

    def put_values(self, identity: Identity | None, handle: str, values: Iterable[HandleValue],
                   *, overwrite: bool = True) -> WriteResult:  # fmt: skip
        """OC_ADD_VALUE / OC_MODIFY_VALUE / REST PUT with ``index``: only the given indexes.
        A value whose index exists is replaced with ``overwrite`` (else ``ValueExists``, rc
        201); new indexes are added."""
        ident = self.parse(handle)
        given = self._stamp(values)
        if len({v.index for v in given}) != len(given):
            raise InvalidValue("duplicate value index")

        def plan(view):
            old = self._existing(view, ident)
            indexes = {v.index for v in old}
            if not overwrite:
                clash = sorted(v.index for v in given if v.index in indexes)
                if clash:
                    raise ValueExists(f"Value already exists at index {clash[0]}")
            replaced = {v.index: v for v in given}
            new = Record([replaced.pop(v.index, v) for v in old] + list(replaced.values()))
            new.validate()
            # ADD_VALUE over an existing index is a modification (registry.authz)
            self._check(self._authorizer(view), identity, Op.ADD_VALUE, ident.text, record=old,
                        touched=tuple(given))  # fmt: skip
            new = self.templates.apply(view, ident, new, old, given=given)
            op = OpCode.MODIFY_VALUE if all(v.index in indexes for v in given) else OpCode.ADD_VALUE
            return [_change(ident, pack(new), op)]

        return WriteResult(ident.text, False, self.store.update(plan, _who(identity)))

    def remove_values(self, identity: Identity | None, handle: str,
                      indexes: Iterable[int]) -> WriteResult:  # fmt: skip
        """OC_REMOVE_VALUE / REST DELETE with ``index``: every index must exist (else
        ``NoSuchValue``, HTTP 400 rc 200)."""
        ident = self.parse(handle)
        drop = set(indexes)

        def plan(view):
            old = self._existing(view, ident)
            missing = sorted(drop - {v.index for v in old})
            if missing:
                raise NoSuchValue(f"No value at index {missing[0]}")
            new = Record(v for v in old if v.index not in drop)
            self._check(self._authorizer(view), identity, Op.REMOVE_VALUE, ident.text,
                        record=old, touched=tuple(v for v in old if v.index in drop))  # fmt: skip
            new = self.templates.apply(view, ident, new, old, given=())
            return [_change(ident, pack(new), OpCode.REMOVE_VALUE)]

        return WriteResult(ident.text, False, self.store.update(plan, _who(identity)))

    def read(self, identity: Identity | None, handle: str, *, tls: bool = False
             ) -> Record | None:  # fmt: skip
        """Authenticated read: the values the identity may see (``resolver.core.grading``):
        general ones; important ones (and values without public read) when it holds
        READ_VALUE on the handle; core ones when it is an owner and ``tls`` (the answer goes
        over TLS).  Without a read right: the public view, as an anonymous reader.  OPERATOR
        reads everything.  None: no such handle."""
        ident = self.parse(handle)
        with self.store.view() as view:
            self._held(view, ident)
            blob = _get(view, ident)
            if blob is None:
                return None
            record = unpack(bytes(blob))
            if identity is OPERATOR:
                return record
            grades = self.templates.grades(view, record)
            reader = self.reader(view, identity, ident, record, tls=tls)
            return Record(filter_values(record, grades, reader))

    def grades(self, view, record: Record) -> dict[int, Grade]:
        """Index → grade of the fields of ``record``'s template (``Templates.grades``)."""
        return self.templates.grades(view, record)

    def reader(self, view, identity: Identity | None, ident: Identifier, record: Record, *,
               tls: bool = False, datagram: bool = False) -> Reader:  # fmt: skip
        """The ``grading.Reader`` of ``identity`` for the handle ``ident`` (current
        ``record``), read in ``view``.

        ``may_read``: READ_VALUE on the handle (``Authorizer.check``; server admins with full
        access hold it).  ``owner``: an HS_ADMIN value of the handle, or of its prefix handle
        ``0.NA/<prefix>``, references the identity (directly or through HS_VLIST groups) with
        a right beyond READ_VALUE and LIST_HANDLES — so an HS_ADMIN granting only READ_VALUE
        makes a reader of important data, not an owner of core data; a server admin is not an
        owner by being one."""
        if identity is None:
            return ANONYMOUS
        if identity is OPERATOR:
            return Reader(True, True, True, tls, datagram)
        authz = self._authorizer(view)
        try:
            authz.check(identity, Op.READ_VALUE, ident.text, record=record)
            may_read = True
        except Forbidden:
            may_read = False
        owner = bool(authz.rights(identity, record) & _OWNER_RIGHTS)
        if not owner and not ident.is_prefix_handle:
            na = view.get_prefix(ident.prefix_key)
            owner = na is not None and bool(authz.rights(identity, unpack(bytes(na)))
                                            & _OWNER_RIGHTS)  # fmt: skip
        return Reader(True, may_read, owner, tls, datagram)

    def apply_batch(self, identity: Identity | None, items: list[BatchItem], *,
                    idempotency_key: str | None = None, fingerprint: bytes = b""
                    ) -> BatchResult:  # fmt: skip
        """Up to ``MAX_BATCH`` items in ONE write transaction, each authorized and answered on
        its own (a refused item changes nothing and does not stop the others); the same
        identifier twice in one batch is refused for the later item.

        ``idempotency_key`` (with ``fingerprint``, a digest of the request): the first request
        stores its results in the same transaction as its changes; a retry with the same key
        and fingerprint gets those results back and changes nothing (a client that timed out
        may retry safely — IDIS integrators retry 504s); the same key with another request is
        ``MalformedRequest``.  Keys are per identity."""
        if identity is None:
            raise AuthenticationNeeded("Authentication needed")
        if len(items) > MAX_BATCH:
            raise MalformedRequest(f"at most {MAX_BATCH} items per batch")
        idem = None
        if idempotency_key is not None:
            idem = _IDEM_PREFIX + hashlib.sha256(
                f"{_who(identity)}\0{idempotency_key}".encode("utf-8")).digest()[:20]
        results: list[ItemResult] = []
        replayed = False

        def plan(view):
            nonlocal replayed
            if idem is not None:
                stored = view.get_meta(idem)
                if stored is not None:
                    if stored[:32] != hashlib.sha256(fingerprint).digest():
                        raise MalformedRequest("Idempotency-Key already used for another request")
                    replayed = True
                    results.extend(ItemResult(h, Outcome(o), m)
                                   for h, o, m in orjson.loads(stored[32:]))  # fmt: skip
                    return []
            changes: list[Change] = []
            seen: set[bytes] = set()
            for item in items:
                try:
                    changes += self._plan_item(view, identity, item, seen)
                    results.append(ItemResult(item.handle, Outcome.OK))
                except IdnodeError as exc:
                    results.append(ItemResult(item.handle, exc.outcome, exc.message))
            if idem is not None:
                record = orjson.dumps([(r.handle, r.outcome.value, r.message) for r in results])
                view.put_meta(idem, hashlib.sha256(fingerprint).digest() + record)
            return changes

        txn = self.store.update(plan, _who(identity))
        return BatchResult(tuple(results), txn, replayed)

    @staticmethod
    def batch_item(op: str, handle: str, values, error=None) -> BatchItem:
        """A ``BatchItem`` (front-ends build items through this, not importing the class)."""
        return BatchItem(op, handle, tuple(values), error)

    def _plan_item(self, view, identity, item: BatchItem, seen: set[bytes]) -> list[Change]:
        if item.error is not None:
            raise item.error
        ident = self.parse(item.handle)
        if ident.key in seen:
            raise MalformedRequest("the same identifier twice in one batch")
        seen.add(ident.key)
        if item.op == "delete":
            return self._plan_delete(view, identity, ident)
        if item.op not in BATCH_OPS:
            raise MalformedRequest(f"unknown batch op {item.op[:20]!r}")
        new = Record(self._stamp(item.values)).validate()
        if item.op == "update":
            self._existing(view, ident)  # update needs the identifier to exist
        changes, _ = self._plan_create(view, identity, ident, new, item.op == "update")
        return changes

    def changes(self, identity: Identity | None, after: int = 0,
                limit: int = 1000) -> list[LoggedChange]:  # fmt: skip
        """The change log after txn id ``after`` (at most ``limit`` entries): server admins
        only (it names every identifier and identity)."""
        if identity is None:
            raise AuthenticationNeeded("Authentication needed")
        if identity is not OPERATOR:
            with self.store.view() as view:
                if not self._authorizer(view).is_server_admin(identity):
                    raise Forbidden("the change log is for server administrators")
        return list(self.store.changes_since(max(0, after), max(0, min(limit, 10_000))))

    def list_handles(self, identity: Identity | None, prefix: str, *, offset: int = 0,
                     limit: int | None = None) -> tuple[int, list[str]]:  # fmt: skip
        """OC_LIST_HANDLES / REST ``GET /api/handles?prefix=``: needs LIST_HANDLES on
        ``0.NA/<prefix>`` unless anonymous listing is allowed by config."""
        ident = self.parse(f"0.NA/{prefix}")
        with self.store.view() as view:
            if view.get_prefix(ident.suffix_key) is None:
                raise NotResponsible("That prefix doesn't live here")
            if not self.allow_anonymous_list:
                if identity is None:
                    raise AuthenticationNeeded("Authentication needed to list handles")
                self._check(self._authorizer(view), identity, Op.LIST_HANDLES, ident.text)
            total, keys = view.list_keys(ident.suffix_key, offset, limit)
        return total, [k.decode("utf-8") for k in keys]


def _get(view, ident: Identifier):
    if ident.is_prefix_handle:
        return view.get_prefix(ident.suffix_key)
    return view.get_record(ident.key)


def _change(ident: Identifier, blob: bytes | None, op: int) -> Change:
    if ident.is_prefix_handle:
        return Change(ident.suffix_key, blob, prefix=True, op=int(op))
    return Change(ident.key, blob, op=int(op))


def _who(identity: Identity | None) -> str:
    return "" if identity is None or identity is OPERATOR else str(identity)
