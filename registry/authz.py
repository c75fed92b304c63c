"""Authorization: who may do what to which handle, after the Handle System's HS_ADMIN model.

Owns the permission bits (``Perm``), identities (``Identity``), the operations that need a
decision (``Op``) and ``Authorizer`` — the one place where those rules live.  REST writes,
native admin operations and authenticated reads all call ``Authorizer.check``.  Proving an
identity (HS_SECKEY / HS_PUBKEY) is not done here: callers pass an identity they have already
authenticated, or ``None``.  Records are read through a ``lookup`` callable, so this module needs
no store; it imports the model (``resolver.identifier``, ``values``, ``record``) and errors.

Contract of ``Authorizer(lookup, server_admins, ...)``
------------------------------------------------------
``lookup(handle_text)`` returns the current ``Record`` of any handle — ordinary identifiers and
prefix handles ``0.NA/<prefix>`` alike — or ``None``.  It is always called with the normalised
key as text (``0.NA/88.118.8``, ``88.118.8/ADMIN``), never with what a client wrote.

Every handle given to the authorizer goes through ``Identifier.parse`` first (``InvalidIdentifier``
otherwise) and every prefix is taken from that parse, so case variants name the same handle
while percent-escapes, Unicode look-alikes or NFC/NFD variants name *other* prefixes (which are
then not homed, or belong to someone else) — never the one they imitate.

Membership (handle.md §5; reference ``HandleServer.isAdminInGroup``, ``ValueReference``):

* a reference ``index:handle`` (in an HS_ADMIN value, an HS_VLIST, or ``server_admins``) is
  matched by an identity with the same normalised handle and the same index; a reference with
  index 0 matches the identity at *any* index (the zero is on the reference's side only: an
  identity ``0:h`` does not match the reference ``300:h``);
* otherwise, when the reference's index is not 0, the value at that index of the referenced
  handle, if it is an HS_VLIST, is a group: its members are matched the same way, recursively
  (breadth first, each reference visited once, so cycles end).  A reference with index 0 is
  never expanded as a group.  Groups nested deeper than ``max_depth`` are not followed, and a
  check follows at most ``MAX_GROUP_LOOKUPS`` groups: what lies beyond is "not a member".
  HS_VLIST and HS_ADMIN values whose data does not decode are ignored.

Decisions of ``check(identity, op, handle, record=, touched=)`` (handle.md §2.3 bits, §5; the
reference ``HandleServer.doCreateHandle`` / ``doAddValue`` / ``doModifyValue`` /
``doRemoveValue`` / ``doDeleteHandle`` / ``doListHandles`` / ``checkReadAccess``):

=====================  ===================================================================
op                     granted when
=====================  ===================================================================
CREATE_HANDLE p/s      ADD_HANDLE in ``0.NA/p`` (if ``allow_na_admins``).  If ``p/s`` already
                       exists (create with overwrite; ``touched`` = the new values): only when
                       one of its own HS_ADMIN values grants every bit of the change
                       (``needed_for_replace``), or a server admin with full access.
CREATE_HANDLE 0.NA/x   as ADD_DERIVED_PREFIX x (plus the same overwrite rule); a top-level
                       ``x`` (no dot): server admins only.
ADD/REMOVE/MODIFY_     the bits of ``needed_for_values`` in the handle's own HS_ADMIN values.
VALUE                  ``touched`` = the values added / removed / modified (new versions).
DELETE_HANDLE          DELETE_HANDLE in the handle's own HS_ADMIN values.
READ_VALUE             READ_VALUE in the handle's own HS_ADMIN values.
LIST_HANDLES x         LIST_HANDLES in ``0.NA/x`` (if ``allow_na_admins``).
ADD_/DELETE_DERIVED_   that bit in ``0.NA/<parent of x>`` (if ``allow_na_admins``); a
PREFIX x               top-level ``x`` has no parent: refused (homing is HOME_NA).
HOME_NA / UNHOME_NA x  server admins only (with or without ``server_admin_full_access``).
=====================  ===================================================================

* One HS_ADMIN value must carry *every* needed bit and reference the identity; bits granted by
  different HS_ADMIN values are not added up (reference ``adminHasPermission``).  ``rights``
  reports the union, for display; ``check`` is the decision.
* ``server_admin_full_access`` (default on) grants server admins every handle-level right,
  including creating under any homed prefix.  With it off they are ordinary identities for
  handle operations (as in the reference) and keep HOME_NA / UNHOME_NA only.
* Operations on a prefix handle ``0.NA/x`` itself (adding an HS_SITE, changing its HS_ADMIN)
  follow that handle's own HS_ADMIN values like any handle.
* The prefix whose ``0.NA`` handle governs a creation, a listing or a derived prefix must be
  homed here (``lookup`` finds its prefix handle); otherwise ``Forbidden`` for everyone.  Callers
  normally answer NOT_RESPONSIBLE before asking; this refusal is the fail-closed backstop.
* **Departures from the reference**, each closing a way to gain rights without the admin bits
  (tests/security): (1) an existing handle is replaced by overwrite only with the bits of the
  change — the reference also lets ADD_ADMIN or DELETE_HANDLE holders replace it, and falls back
  to ADD_HANDLE on the prefix, so a delete right or a prefix admin could rewrite its HS_ADMIN;
  (2) an HS_VLIST counts as an admin value: adding, changing or removing one needs ADD_ADMIN,
  MODIFY_ADMIN or REMOVE_ADMIN, since a group an HS_ADMIN names grants its members those rights
  (the reference treats it as an ordinary value, so MODIFY_VALUE on a group handle was enough to
  join the group).
* A value without admin write (``PERM_ADMIN_WRITE``) cannot be modified by anyone.  Modifying
  a non-admin value that has public write needs no bit (reference), but ``identity=None``
  always raises ``AuthenticationNeeded``: anonymous writes are not supported.
* Refusals raise ``Forbidden`` naming the missing bits, the identity and the governing handle;
  never value data.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import re
from typing import Callable, Iterable

from resolver.errors import AuthenticationNeeded, Forbidden, InvalidIdentifier, InvalidValue
from resolver.identifier import NA_PREFIX, Identifier
from resolver.record import Record
from resolver.values import (
    ADMIN_TYPE, PERM_ADMIN_WRITE, PERM_PUBLIC_WRITE, VLIST_TYPE, AdminRecord, HandleValue,
    decode_vlist,
)  # fmt: skip

MAX_INDEX = 0x7FFFFFFF
#: Groups (HS_VLIST values) one decision may resolve; bounds the work a hostile group graph
#: can cause.  Beyond it a reference counts as "not a member".
MAX_GROUP_LOOKUPS = 256

_INDEX = re.compile(r"[0-9]{1,10}")


class Perm(enum.IntFlag):
    """HS_ADMIN permission bits (handle.md §2.3; reference ``AdminRecord``)."""

    ADD_HANDLE = 0x1
    DELETE_HANDLE = 0x2
    ADD_DERIVED_PREFIX = 0x4
    DELETE_DERIVED_PREFIX = 0x8
    MODIFY_VALUE = 0x10
    REMOVE_VALUE = 0x20
    ADD_VALUE = 0x40
    MODIFY_ADMIN = 0x80
    REMOVE_ADMIN = 0x100
    ADD_ADMIN = 0x200
    READ_VALUE = 0x400
    LIST_HANDLES = 0x800

    def describe(self) -> str:
        """``ADD_ADMIN+MODIFY_VALUE`` (bit order), or ``nothing``."""
        return "+".join(p.name for p in Perm if p & self) or "nothing"


ALL_PERMS = Perm(0xFFF)


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """``index:handle`` — who an authenticated caller is (handle.md §1, TM9 §1.4).

    Equality and hashing use the index and the normalised handle key (ASCII case folded, a
    slashless name meaning ``0.NA/<name>``), so ``300:88.118.8/admin`` is the same identity as
    ``300:88.118.8/ADMIN``.  ``handle`` keeps the text as given; ``key`` is derived.
    """

    index: int
    handle: str = dataclasses.field(compare=False)
    key: bytes = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if type(self.index) is not int or not 0 <= self.index <= MAX_INDEX:
            raise InvalidIdentifier(f"bad identity index {self.index!r}")
        if not isinstance(self.handle, str):
            raise InvalidIdentifier("identity handle must be text")
        object.__setattr__(self, "key", Identifier.parse(self.handle).key)

    @classmethod
    def parse(cls, text: str) -> "Identity":
        """``"300:88.118.8/ADMIN"`` → Identity(300, ...); no ``index:`` → index 0.

        Split at the first ``:`` when the part before it holds no ``/`` (so a colon inside a
        suffix is part of the handle, as the reference ``ValueReference.fromString``); that
        part must then be a decimal index, else ``InvalidIdentifier``.
        """
        if not isinstance(text, str):
            raise InvalidIdentifier("identity must be text")
        head, colon, rest = text.partition(":")
        if colon and "/" not in head:
            if not _INDEX.fullmatch(head) or int(head) > MAX_INDEX:
                raise InvalidIdentifier(f"bad identity index {head[:16]!r}")
            return cls(int(head), rest)
        return cls(0, text)

    def __str__(self) -> str:
        return f"{self.index}:{self.handle}"


class Op(enum.Enum):
    """Operations that need an authorization decision (handle.md §3.3 op codes, REST §7)."""

    CREATE_HANDLE = "create handle"
    DELETE_HANDLE = "delete handle"
    ADD_VALUE = "add values to"
    REMOVE_VALUE = "remove values from"
    MODIFY_VALUE = "modify values of"
    READ_VALUE = "read restricted values of"
    LIST_HANDLES = "list handles of"
    ADD_DERIVED_PREFIX = "add derived prefix"
    DELETE_DERIVED_PREFIX = "delete derived prefix"
    HOME_NA = "home prefix"
    UNHOME_NA = "unhome prefix"


# -- what a change needs (the reference's neededPerms arrays, as one mask) ---------------------


def _is_admin(v: HandleValue) -> bool:
    # HS_VLIST too: a group named by an HS_ADMIN is as powerful as the HS_ADMIN (departure 2)
    return v.has_type(ADMIN_TYPE) or v.has_type(VLIST_TYPE)


def _same_but_timestamp(a: HandleValue, b: HandleValue) -> bool:
    return a.replace(timestamp=0) == b.replace(timestamp=0)


def _modify_bits(old: HandleValue, new: HandleValue) -> Perm:
    old_admin, new_admin = _is_admin(old), _is_admin(new)
    if old_admin and new_admin:
        return Perm.MODIFY_ADMIN
    if old_admin:
        return Perm.REMOVE_ADMIN | Perm.MODIFY_VALUE
    if new_admin:
        return Perm.MODIFY_VALUE | Perm.ADD_ADMIN
    if old.permissions & PERM_PUBLIC_WRITE:
        return Perm(0)  # a publicly writable value: no admin right needed (reference)
    return Perm.MODIFY_VALUE


def _add_bits(v: HandleValue) -> Perm:
    return Perm.ADD_ADMIN if _is_admin(v) else Perm.ADD_VALUE


def _remove_bits(v: HandleValue) -> Perm:
    return Perm.REMOVE_ADMIN if _is_admin(v) else Perm.REMOVE_VALUE


def needed_for_values(op: Op, record: Iterable[HandleValue],
                      touched: Iterable[HandleValue] = ()) -> Perm:  # fmt: skip
    """Bits one HS_ADMIN value of the handle must grant for ADD/REMOVE/MODIFY_VALUE.

    ``record`` = current values; ``touched`` = values added, removed (only their indexes
    count: the stored value decides whether it is an HS_ADMIN) or modified (new versions).
    No ``touched`` → the operation's plain bit.  ADD over an existing index is a modification
    (identical values need nothing); MODIFY of an index not in the record is an addition
    (callers answer VALUES_NOT_FOUND first).  Raises ``Forbidden`` when MODIFY touches a value
    without admin write.
    """
    touched = list(touched)
    if not touched:
        return {Op.ADD_VALUE: Perm.ADD_VALUE, Op.REMOVE_VALUE: Perm.REMOVE_VALUE,
                Op.MODIFY_VALUE: Perm.MODIFY_VALUE}[op]  # fmt: skip
    current = {v.index: v for v in record}
    need = Perm(0)
    for new in touched:
        old = current.get(new.index)
        if op is Op.REMOVE_VALUE:
            need |= _remove_bits(old if old is not None else new)
        elif old is None:
            need |= _add_bits(new)
        elif op is Op.ADD_VALUE:
            if not _same_but_timestamp(old, new):
                need |= _modify_bits(old, new)
        elif op is Op.MODIFY_VALUE:
            if not old.permissions & PERM_ADMIN_WRITE:
                raise Forbidden(f"value {old.index} is read-only (no admin write)")
            need |= _modify_bits(old, new)
        else:
            raise ValueError(f"{op} is not a value operation")
    return need


def needed_for_replace(record: Iterable[HandleValue], new_values: Iterable[HandleValue]) -> Perm:
    """Bits the handle's own HS_ADMIN must grant to replace ``record`` by ``new_values``
    (create with overwrite; reference ``getPermsAndSetTimestampsForCreationWithOverwrite``)."""
    old = {v.index: v for v in record}
    new = {v.index: v for v in new_values}
    need = Perm(0)
    for index, v in old.items():
        if index not in new:
            need |= _remove_bits(v)
        elif not _same_but_timestamp(v, new[index]):
            need |= _modify_bits(v, new[index])
    for index, v in new.items():
        if index not in old:
            need |= _add_bits(v)
    return need


# -- the authorizer ---------------------------------------------------------------------------

_Ref = tuple[bytes, int]  # (normalised handle key, index)


class _Reads:
    """The lookups of one decision, each handle read once."""

    __slots__ = ("lookup", "cache", "groups")

    def __init__(self, lookup: Callable[[str], Record | None]) -> None:
        self.lookup = lookup
        self.cache: dict[bytes, Record | None] = {}
        self.groups = 0

    def get(self, key: bytes) -> Record | None:
        if key not in self.cache:
            self.cache[key] = self.lookup(key.decode("utf-8"))
        return self.cache[key]


def _matches(ref: _Ref, who: _Ref) -> bool:
    # Reference ValueReference.isMatchedBy: index 0 on the reference's side means any index.
    return ref[0] == who[0] and (ref[1] == 0 or ref[1] == who[1])


class Authorizer:
    """Decides HS_ADMIN authorization (module docstring: rules and lookup contract)."""

    def __init__(self, lookup: Callable[[str], Record | None],
                 server_admins: Iterable[Identity] = (), *, allow_na_admins: bool = True,
                 server_admin_full_access: bool = True, max_depth: int = 16,
                 case_sensitive: bool = False) -> None:  # fmt: skip
        self._lookup = lookup
        self.server_admins = tuple(server_admins)
        self.allow_na_admins = allow_na_admins
        self.server_admin_full_access = server_admin_full_access
        self.max_depth = max_depth
        self.case_sensitive = case_sensitive
        self._server_refs = tuple(self._who(a) for a in self.server_admins)

    # -- keys ------------------------------------------------------------------------------
    def _parse(self, handle: str) -> Identifier:
        return Identifier.parse(handle, case_sensitive=self.case_sensitive)

    def _who(self, identity: Identity) -> _Ref:
        return (self._parse(identity.handle).key, identity.index)

    def _ref(self, handle: str, index: int) -> _Ref | None:
        try:
            return (self._parse(handle).key, index)
        except InvalidIdentifier:
            return None  # a stored reference that names no valid handle grants nothing

    @staticmethod
    def _prefix_operand(ident: Identifier) -> str:
        """``x`` of a prefix named as ``x`` or ``0.NA/x``; validated as a prefix."""
        if not ident.is_prefix_handle:
            raise InvalidIdentifier(f"{ident.text} names a handle, not a prefix")
        prefix = ident.suffix_key.decode("utf-8")
        if "/" in prefix:
            raise InvalidIdentifier("a prefix contains no '/'")
        Identifier.parse(prefix)  # segments: no empty, leading, trailing or doubled dots
        return prefix

    @staticmethod
    def _na_key(prefix: str) -> bytes:
        return f"{NA_PREFIX}/{prefix}".encode("utf-8")

    # -- membership ------------------------------------------------------------------------
    def _vlist_members(self, record: Record, index: int) -> Iterable[_Ref]:
        for v in record:
            if v.index != index or not v.has_type(VLIST_TYPE):
                continue
            try:
                members = decode_vlist(v.data)
            except InvalidValue:
                continue
            for handle, member_index in members:
                ref = self._ref(handle, member_index)
                if ref is not None:
                    yield ref

    def _reaches(self, who: _Ref, roots: Iterable[_Ref], reads: _Reads) -> bool:
        """Does any root reference match ``who``, directly or through HS_VLIST groups?"""
        queue: collections.deque[tuple[_Ref, int]] = collections.deque()
        for ref in roots:
            if _matches(ref, who):
                return True
            queue.append((ref, 0))
        seen: set[_Ref] = set()
        while queue:
            ref, depth = queue.popleft()
            if ref in seen:
                continue
            seen.add(ref)
            # Index 0 is "any index" of a handle, never a group (reference isAdminInGroup).
            if ref[1] == 0 or depth >= self.max_depth:
                continue
            if reads.groups >= MAX_GROUP_LOOKUPS:
                return False
            reads.groups += 1
            record = reads.get(ref[0])
            if record is None:
                continue
            for member in self._vlist_members(record, ref[1]):
                if _matches(member, who):
                    return True
                if member not in seen:
                    queue.append((member, depth + 1))
        return False

    def is_member(self, identity: Identity, ref: Identity) -> bool:
        """Is ``identity`` matched by the reference ``ref``, directly or through groups?"""
        return self._reaches(self._who(identity), [self._who(ref)], _Reads(self._lookup))

    def is_server_admin(self, identity: Identity) -> bool:
        """Is ``identity`` one of ``server_admins``, directly or through their HS_VLISTs?"""
        return self._reaches(self._who(identity), self._server_refs, _Reads(self._lookup))

    # -- HS_ADMIN --------------------------------------------------------------------------
    def _grants(self, record: Iterable[HandleValue]) -> list[tuple[Perm, _Ref]]:
        out = []
        for v in record:
            if not v.has_type(ADMIN_TYPE):
                continue
            try:
                admin = AdminRecord.from_bytes(v.data)
            except InvalidValue:
                continue  # undecodable HS_ADMIN data grants nothing
            ref = self._ref(admin.handle, admin.index)
            if ref is not None:
                out.append((Perm(admin.permissions & ALL_PERMS), ref))
        return out

    def _granted(self, who: _Ref, record: Iterable[HandleValue] | None, needed: Perm,
                 reads: _Reads) -> bool:  # fmt: skip
        if record is None:
            return False
        roots = [ref for perms, ref in self._grants(record) if perms & needed == needed]
        return bool(roots) and self._reaches(who, roots, reads)

    def _union(self, who: _Ref, record: Iterable[HandleValue] | None, reads: _Reads) -> Perm:
        out = Perm(0)
        for perms, ref in self._grants(record or ()):
            if perms & ~out and self._reaches(who, [ref], reads):
                out |= perms
        return out

    def rights(self, identity: Identity, record: Iterable[HandleValue]) -> Perm:
        """Union of the masks of the HS_ADMIN values of ``record`` that reference
        ``identity`` (directly or through groups).  For display: ``check`` needs one value
        with every bit.  Server-admin full access is not included."""
        return self._union(self._who(identity), record, _Reads(self._lookup))

    # -- decisions -------------------------------------------------------------------------
    def check(self, identity: Identity | None, op: Op, handle: str, *, record: Record | None = None,
              touched: Iterable[HandleValue] = ()) -> None:
        """Return if ``identity`` may do ``op`` on ``handle``; else raise.

        ``record``: the handle's current record if the caller has it (else it is looked up);
        ``touched``: the values added / removed / modified, or a created handle's values.
        Raises ``AuthenticationNeeded`` (identity None), ``InvalidIdentifier`` (bad handle
        or prefix), ``Forbidden`` (refused; the message names the missing bits).
        """
        if not isinstance(op, Op):
            raise TypeError(f"not an Op: {op!r}")
        if identity is None:
            raise AuthenticationNeeded(f"authentication needed to {op.value} {handle}")
        ident = self._parse(handle)
        _Decision(self, identity, op, ident, record, tuple(touched)).run()


class _Decision:
    """One ``check`` call: its reads are cached and server-admin status computed at most once."""

    def __init__(self, authz: Authorizer, identity: Identity, op: Op, ident: Identifier,
                 record: Record | None, touched: tuple[HandleValue, ...]) -> None:  # fmt: skip
        self.a = authz
        self.identity = identity
        self.op = op
        self.ident = ident
        self.record = record
        self.touched = touched
        self.reads = _Reads(authz._lookup)
        self.who = authz._who(identity)
        self._server_admin: bool | None = None

    def server_admin(self) -> bool:
        if self._server_admin is None:
            self._server_admin = self.a._reaches(self.who, self.a._server_refs, self.reads)
        return self._server_admin

    def full_access(self) -> bool:
        return self.a.server_admin_full_access and self.server_admin()

    def granted(self, record: Iterable[HandleValue] | None, needed: Perm) -> bool:
        return self.a._granted(self.who, record, needed, self.reads)

    def own_record(self) -> Record | None:
        return self.record if self.record is not None else self.reads.get(self.ident.key)

    def refuse(self, needed: Perm, governing: bytes, record: Iterable[HandleValue] | None,
               *, na: bool = False) -> Forbidden:  # fmt: skip
        where = governing.decode("utf-8")
        if na and not self.a.allow_na_admins:
            return Forbidden(f"{self.identity} may not {self.op.value} {self.ident.text}: "
                             f"prefix admins are disabled here; {needed.describe()} in {where} "
                             "is not honoured")  # fmt: skip
        missing = needed & ~self.a._union(self.who, record, self.reads)
        if missing:
            why = f"lacks {missing.describe()} in the HS_ADMIN values of {where}"
        else:
            why = f"has no single HS_ADMIN value of {where} granting {needed.describe()}"
        return Forbidden(f"{self.identity} may not {self.op.value} {self.ident.text}: {why}")

    # -- rules -----------------------------------------------------------------------------
    def run(self) -> None:
        op = self.op
        if op in (Op.HOME_NA, Op.UNHOME_NA):
            prefix = self.a._prefix_operand(self.ident)
            if not self.server_admin():
                raise Forbidden(f"{self.identity} may not {op.value} {prefix}: "
                                "server admins only")  # fmt: skip
        elif op is Op.CREATE_HANDLE:
            self.create()
        elif op in (Op.ADD_DERIVED_PREFIX, Op.DELETE_DERIVED_PREFIX):
            prefix = self.a._prefix_operand(self.ident)
            parent = prefix.rpartition(".")[0]
            if not parent:
                raise Forbidden(f"{prefix} is not a derived prefix; a top-level prefix is "
                                "homed by a server admin")  # fmt: skip
            self.na_rule(self.a._na_key(parent), Perm[op.name])
        elif op is Op.LIST_HANDLES:
            prefix = self.a._prefix_operand(self.ident)
            self.na_rule(self.a._na_key(prefix), Perm.LIST_HANDLES)
        else:
            self.own_rule()

    def homed(self, na_key: bytes) -> Record:
        """The prefix handle ``na_key``; ``Forbidden`` when its prefix is not homed here."""
        na = self.reads.get(na_key)
        if na is None:
            prefix = na_key.decode("utf-8").partition("/")[2]
            raise Forbidden(f"{self.identity} may not {self.op.value} {self.ident.text}: "
                            f"prefix {prefix} is not homed here")  # fmt: skip
        return na

    def na_rule(self, na_key: bytes, bit: Perm) -> None:
        """``bit`` in an HS_ADMIN of the prefix handle ``na_key``, which must be homed here."""
        na = self.homed(na_key)
        if self.full_access():
            return
        if self.a.allow_na_admins and self.granted(na, bit):
            return
        raise self.refuse(bit, na_key, na, na=True)

    def own_rule(self) -> None:
        """Rights from the handle's own HS_ADMIN values (value ops, delete, read)."""
        record = self.own_record()
        if self.op is Op.DELETE_HANDLE:
            needed = Perm.DELETE_HANDLE
        elif self.op is Op.READ_VALUE:
            needed = Perm.READ_VALUE
        else:
            try:
                needed = needed_for_values(self.op, record or (), self.touched)
            except Forbidden as exc:
                raise Forbidden(f"{self.identity} may not {self.op.value} "
                                f"{self.ident.text}: {exc.message}") from None  # fmt: skip
        if not needed:
            return
        if self.granted(record, needed) or self.full_access():
            return
        raise self.refuse(needed, self.ident.key, record)

    def create(self) -> None:
        ident = self.ident
        if ident.is_prefix_handle:
            prefix = self.a._prefix_operand(ident)
            parent = prefix.rpartition(".")[0]
            na_key = self.a._na_key(parent) if parent else None
            bit = Perm.ADD_DERIVED_PREFIX
        else:
            na_key = self.a._na_key(ident.prefix_key.decode("utf-8"))
            bit = Perm.ADD_HANDLE
        if na_key is not None:
            self.homed(na_key)  # checked first, as the reference's errorIfNotHaveHandle
        existing = self.own_record()
        if existing is not None:
            # Create with overwrite: one of the handle's own HS_ADMIN values must grant every
            # bit of the change, or a server admin with full access (departure 1 above).
            needed = needed_for_replace(existing, self.touched)
            if not needed or self.granted(existing, needed) or self.full_access():
                return
            raise self.refuse(needed, ident.key, existing)
        if na_key is None:
            if self.server_admin():
                return
            raise Forbidden(f"{self.identity} may not {self.op.value} {ident.text}: "
                            "a top-level prefix is homed by a server admin")  # fmt: skip
        self.na_rule(na_key, bit)
