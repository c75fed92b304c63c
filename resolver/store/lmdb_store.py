"""LMDB implementation of the store contract (one environment, named databases of schema.py).

Durable by construction: the environment is always opened with sync and metasync on.  Every
write batch is one write transaction that also appends to ``changes`` and adds the records it
created, updated or deleted to the registration counters (schema.STATS).  ``lmdb.MapFullError``
becomes ``StoreFull`` after LMDB has aborted the transaction, so the store stays readable.
Disabling a prefix (``disable_prefix`` / ``enable_prefix``) moves its prefix handle between
``prefixes`` and ``disabled`` in one logged transaction (schema.DISABLED).  The ``takeover_*``
methods keep a top-level node's copy of its secondaries' data (schema.TAKEOVER), apart from
everything held here.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import operator
import os
import time
from typing import Iterable, Iterator

import lmdb

from resolver.errors import AlreadyExists, HandleNotFound, StoreError, StoreFormatError, StoreFull
from resolver.store import Change, LoggedChange
from resolver.store import schema as S

DEFAULT_MAP_SIZE = 16 << 30  # 16 GiB of address space; the file grows only as data arrives


class LmdbStore:
    """A store in one LMDB environment directory.  Open after ``fork``, never before."""

    def __init__(self, path: str | os.PathLike, *, map_size: int = DEFAULT_MAP_SIZE,
                 readonly: bool = False, max_readers: int = 512) -> None:  # fmt: skip
        self.path = os.fspath(path)
        if readonly and not os.path.exists(os.path.join(self.path, "data.mdb")):
            raise StoreError(f"no store at {self.path}: load data first (idnode load)")
        os.makedirs(self.path, exist_ok=True)
        try:
            self.env = lmdb.open(
                self.path, map_size=map_size, max_dbs=len(S.ALL_DATABASES) + 4,
                readonly=readonly, sync=True, metasync=True, readahead=False,
                max_readers=max_readers, lock=True, subdir=True,
            )  # fmt: skip
        except lmdb.Error as exc:
            raise StoreError(f"cannot open store at {self.path}: {exc}") from None
        create = not readonly
        try:
            self.records_db = self.env.open_db(S.RECORDS, create=create)
            self.prefixes_db = self.env.open_db(S.PREFIXES, create=create)
            self.changes_db = self.env.open_db(S.CHANGES, create=create)
            self.meta_db = self.env.open_db(S.META, create=create)
        except lmdb.Error as exc:
            self.env.close()
            raise StoreFormatError(f"store at {self.path} lacks idnode databases: {exc}") from None
        try:  # added after format 2 shipped: a read-only open of an older store has none
            self.disabled_db = self.env.open_db(S.DISABLED, create=create)
        except lmdb.NotFoundError:
            self.disabled_db = None
        try:  # likewise (schema.TAKEOVER)
            self.takeover_db = self.env.open_db(S.TAKEOVER, create=create)
        except lmdb.NotFoundError:
            self.takeover_db = None
        try:  # likewise (schema.STATS)
            self.stats_db = self.env.open_db(S.STATS, create=create)
        except lmdb.NotFoundError:
            self.stats_db = None
        self._check_format(readonly)

    def _check_format(self, readonly: bool) -> None:
        with self.env.begin(db=self.meta_db) as txn:
            found = txn.get(S.META_FORMAT_VERSION)
        if found is None and not readonly:
            with self.env.begin(write=True, db=self.meta_db) as txn:
                txn.put(S.META_FORMAT_VERSION, str(S.FORMAT_VERSION).encode())
                txn.put(S.META_CREATED, str(int(time.time())).encode())
            return
        if found == b"1" and not readonly:
            with self.env.begin(write=True) as txn:  # one transaction: all or nothing
                upgrade_v1_changes(txn, self.changes_db)
                txn.put(S.META_FORMAT_VERSION, str(S.FORMAT_VERSION).encode(), db=self.meta_db)
            return
        if found != str(S.FORMAT_VERSION).encode():
            self.env.close()
            shown = found.decode("ascii", "replace") if found is not None else "none"
            raise StoreFormatError(
                f"store at {self.path} has format version {shown}; this idnode reads version "
                f"{S.FORMAT_VERSION} only"
                + (" — open it once writable (e.g. idnode load) to upgrade it" if found == b"1"
                   else " — migrate it or point --data elsewhere")
            )

    # -- reads -----------------------------------------------------------------------------
    def read(self):
        """A read transaction (context manager); cheap, never blocks writers."""
        return self.env.begin(write=False)

    @contextlib.contextmanager
    def view(self):
        """A read-only view (``get_record``, ``get_prefix``, ``list_keys``) of one snapshot —
        the same interface ``update`` plans get."""
        with self.env.begin(write=False) as txn:
            yield _View(self, txn)

    def get_record(self, key: bytes) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(key, db=self.records_db)

    def get_prefix(self, prefix: bytes) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(prefix, db=self.prefixes_db)

    def prefixes(self) -> list[bytes]:
        with self.env.begin() as txn:
            return [k for k, _ in txn.cursor(db=self.prefixes_db)]

    def get_disabled(self, prefix: bytes) -> bytes | None:
        """The prefix handle record of a disabled prefix (schema.DISABLED), or None."""
        if self.disabled_db is None:
            return None
        with self.env.begin() as txn:
            return txn.get(prefix, db=self.disabled_db)

    def disabled_prefixes(self) -> list[bytes]:
        if self.disabled_db is None:
            return []
        with self.env.begin() as txn:
            return [k for k, _ in txn.cursor(db=self.disabled_db)]

    def list_keys(self, prefix: bytes, offset: int = 0, limit: int | None = None
                  ) -> tuple[int, list[bytes]]:  # fmt: skip
        """Keys under ``prefix/`` in key order: (total count, keys[offset:offset+limit])."""
        with self.env.begin() as txn:
            return _list_keys(txn, self.records_db, prefix, offset, limit)

    def last_txn_id(self) -> int:
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.changes_db)
            return S.TXN_ID.unpack(cur.key())[0] if cur.last() else 0

    def changes_since(self, txn_id: int, limit: int | None = None) -> Iterator[LoggedChange]:
        """Change-log entries after ``txn_id``, oldest first (at most ``limit``)."""
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.changes_db)
            if not cur.set_range(S.TXN_ID.pack(txn_id + 1)):
                return
            for n, (k, v) in enumerate(cur):
                if limit is not None and n >= limit:
                    return
                yield decode_change(S.TXN_ID.unpack(k)[0], v)

    def meta_value(self, name: bytes, create=None) -> bytes | None:
        """A ``meta`` entry; when missing and ``create`` is given, ``create()`` is stored
        (first writer wins: every process then reads the same bytes)."""
        with self.env.begin(db=self.meta_db) as txn:
            found = txn.get(name)
        if found is not None or create is None:
            return found
        with self.env.begin(write=True, db=self.meta_db) as txn:
            found = txn.get(name)
            if found is None:
                found = create()
                txn.put(name, found)
        return found

    def meta_scan(self, prefix: bytes, after: bytes = b"", limit: int | None = None
                  ) -> list[tuple[bytes, bytes]]:  # fmt: skip
        """``meta`` entries whose names start with ``prefix``, in name order, after the name
        ``prefix + after`` (exclusive; empty: from the first), at most ``limit``."""
        out: list[tuple[bytes, bytes]] = []
        with self.env.begin(db=self.meta_db) as txn:
            cur = txn.cursor()
            start = prefix + after
            if not cur.set_range(start):
                return out
            for k, v in cur:
                if not k.startswith(prefix) or (limit is not None and len(out) >= limit):
                    break
                if after and k == start:
                    continue
                out.append((k, v))
        return out

    def meta_put(self, name: bytes, value: bytes | None) -> None:
        """Set (or, with None, delete) a ``meta`` entry in its own durable transaction."""
        try:
            with self.env.begin(write=True, db=self.meta_db) as txn:
                if value is None:
                    txn.delete(name)
                else:
                    txn.put(name, value)
        except lmdb.MapFullError:
            raise StoreFull(f"store at {self.path} is full; raise map_size") from None

    def stat(self) -> dict:
        with self.env.begin() as txn:
            return {
                "records": txn.stat(self.records_db)["entries"],
                "prefixes": txn.stat(self.prefixes_db)["entries"],
                "changes": txn.stat(self.changes_db)["entries"],
            }

    # -- writes ----------------------------------------------------------------------------
    def write(self, changes: Iterable[Change], identity: str = "") -> int:
        """Apply a batch in one transaction (keys sorted); unchanged records are skipped."""
        batch = list(changes)
        if not batch:
            return 0
        return self.update(lambda _view: batch, identity)

    def update(self, plan, identity: str = ""):
        """Run ``plan(view)`` in a write transaction, apply the changes it returns there.

        Returns what ``write`` returns: the last transaction id logged (0 if nothing changed).
        ``view`` reads inside the transaction (``get_record``, ``get_prefix``,
        ``get_disabled``, ``list_keys``), so checks and the writes they allow cannot be
        separated by another writer (LMDB serialises write transactions across processes).
        An exception from ``plan`` aborts the transaction.
        """
        ident = _identity(identity)
        with self._writing() as txn:
            batch = sorted(plan(_View(self, txn)), key=lambda c: (c.prefix, c.key))
            return self._apply(txn, batch, ident)

    @contextlib.contextmanager
    def _writing(self):
        """A write transaction whose LMDB failures become ``StoreFull`` / ``StoreError``."""
        try:
            with self.env.begin(write=True) as txn:
                yield txn
        except lmdb.MapFullError:
            raise StoreFull(
                f"store at {self.path} is full (map_size {self.env.info()['map_size']} bytes): "
                "the write was rolled back; raise map_size"
            ) from None
        except lmdb.Error as exc:
            raise StoreError(f"write failed: {exc}") from None

    def insert(self, plan, identity: str = "") -> int:
        """The create-only bulk form of ``update`` (import chunks), in one write transaction.

        ``plan(view)`` returns ``(items, finish, marker)``.  ``items``: ``(key, blob)`` pairs for
        ``records``, sorted by key, each stored only if its key is absent (LMDB NOOVERWRITE).
        ``finish(view, refused)`` then runs in the same transaction with the positions in
        ``items`` that were refused because the key exists — the caller writes its bookkeeping
        to ``meta`` there, so it commits with the records or not at all.  One change-log entry
        records the chunk (schema.CHANGES, ``ACTION_IMPORT``): key ``marker``, and as detail
        the key and SHA-256 of every record created.  Returns its id (0: nothing created).
        An exception rolls everything back.

        Speed (issue 5 §4): the puts go through ``Cursor.putmulti`` — one C loop instead of a
        Python call per record — in LMDB's append mode when the chunk sorts after every key.  It reports only how many were added; when some key existed,
        the transaction is rolled back and the chunk put again one by one to learn which.
        """
        ident = _identity(identity)
        try:
            with self._writing() as txn:
                view = _View(self, txn)
                items, finish, marker = plan(view)
                cur = txn.cursor(db=self.records_db)
                # keys past the last one stored (a factory's rising serials): LMDB's append
                # mode fills leaf pages instead of splitting them — a smaller, faster commit
                append = bool(items) and (not cur.last() or cur.key() < items[0][0])
                added = 0
                for i in range(0, len(items), _PUT_SLICE):
                    added += cur.putmulti(items[i : i + _PUT_SLICE], overwrite=False,
                                          append=append)[1]  # fmt: skip
                if added != len(items):
                    raise _SomeExist  # roll back; learn which in a clean transaction
                return self._log_chunk(txn, view, items, [], finish, marker, ident)
        except _SomeExist:
            return self._insert_each(plan, ident)

    def _insert_each(self, plan, ident: bytes) -> int:
        with self._writing() as txn:
            view = _View(self, txn)
            items, finish, marker = plan(view)
            put, db = txn.put, self.records_db
            refused = [i for i, (key, blob) in enumerate(items)
                       if not put(key, blob, db=db, overwrite=False)]  # fmt: skip
            return self._log_chunk(txn, view, items, refused, finish, marker, ident)

    def _log_chunk(self, txn, view, items, refused, finish, marker, ident: bytes) -> int:
        finish(view, refused)
        if refused:
            skip = set(refused)
            items = [it for i, it in enumerate(items) if i not in skip]
        if not items:
            return 0
        # one SHA-256 over the chunk's records, not one per record, fed in slices: hashlib
        # releases the GIL for large inputs, so it runs beside the parsing of the next chunk,
        # and no slice is long to copy while holding the GIL
        h = hashlib.sha256()
        for i in range(0, len(items), _PUT_SLICE):
            h.update(b"".join(map(_SECOND, items[i : i + _PUT_SLICE])))
        detail = S.IMPORT_SEPARATOR.join(map(_FIRST, items))  # keys hold no control byte
        log = _Log(txn, self.changes_db, ident, self.stats_db)
        log.append(S.ACTION_IMPORT, 0, marker, None, None,
                   S.IMPORT_COUNT.pack(len(items)) + detail, after=h.digest())  # fmt: skip
        first, last = items[0][0], items[-1][0]
        head = first[: first.find(b"/") + 1]
        if last.startswith(head):  # sorted: every key between shares the prefix (the usual)
            log.count(head[:-1], S.STATS_REG_CREATE, len(items))
        else:
            for prefix, n in collections.Counter(k[: k.find(b"/")] for k, _ in items).items():
                log.count(prefix, S.STATS_REG_CREATE, n)
        log.add_counts()
        return log.last()

    def _apply(self, txn, batch: list[Change], ident: bytes) -> int:
        log = _Log(txn, self.changes_db, ident, self.stats_db)
        for c in batch:
            db = self.prefixes_db if c.prefix else self.records_db
            old = txn.get(c.key, db=db)
            if c.blob is None:
                if old is None or not txn.delete(c.key, db=db):
                    continue
                action = S.ACTION_UNHOME_PREFIX if c.prefix else S.ACTION_DELETE
            else:
                if old == c.blob:
                    continue  # idempotent: same bytes, no change, no log entry
                if c.prefix and old is None and self._is_disabled(txn, c.key):
                    # schema.DISABLED: a key lives in one of prefixes / disabled, never both
                    raise AlreadyExists(f"prefix {c.key.decode('utf-8', 'replace')} is "
                                        "disabled here; enable it first")  # fmt: skip
                txn.put(c.key, c.blob, db=db)
                if c.prefix:
                    action = S.ACTION_HOME_PREFIX
                else:
                    action = S.ACTION_UPDATE if old is not None else S.ACTION_CREATE
            log.append(action, c.op, c.key, old, c.blob)
        log.add_counts()
        return log.last()

    def _is_disabled(self, txn, prefix: bytes) -> bool:
        return self.disabled_db is not None and txn.get(prefix, db=self.disabled_db) is not None

    # -- counters (schema.STATS) -------------------------------------------------------------
    def add_stats(self, counts) -> None:
        """Add ``counts`` — ``{(prefix, hour, metric): n}`` (bytes, int, bytes, int ≥ 0) — to
        the counters in one write transaction (schema.STATS)."""
        if not counts:
            return
        rows = sorted((_stats_key(p, h, m), n) for (p, h, m), n in counts.items() if n)
        with self._writing() as txn:
            _add_counts(txn, self.stats_db, rows)

    def stats(self, prefix: bytes | None = None, first_hour: int = 0,
              last_hour: int = 0xFFFFFFFF) -> Iterator[tuple[bytes, int, bytes, int]]:  # fmt: skip
        """``(prefix, hour, metric, count)`` of every counter with ``first_hour ≤ hour ≤
        last_hour``, in key order; ``prefix``: only that prefix and the prefixes derived from it
        (``88.118`` → ``88.118``, ``88.118.8``, …; not ``88.1180``); None: every prefix, the
        empty one included.  One read snapshot, materialised (the caller may write meanwhile)."""
        if self.stats_db is None:
            return iter(())
        out = []
        start = prefix or b""
        with self.env.begin(db=self.stats_db) as txn:
            cur = txn.cursor()
            if not cur.set_range(start):
                return iter(())
            for key, value in cur:
                if not key.startswith(start):
                    break
                p, hour, metric = _split_stats_key(key)
                if prefix is not None and p != prefix and not p.startswith(prefix + b"."):
                    continue
                if first_hour <= hour <= last_hour:
                    out.append((p, hour, metric, S.STATS_COUNT.unpack(value)[0]))
        return iter(out)

    # -- disabling prefixes (schema.DISABLED) ---------------------------------------------
    def disable_prefix(self, prefix: bytes, identity: str = "", check=None) -> int:
        """Move the prefix handle of ``prefix`` from ``prefixes`` to ``disabled`` and log
        UNHOME (op 0, ``identity``), in one write transaction.  ``check(view)``, if given, runs
        first inside that transaction (raise to refuse).  Returns the change-log id, 0 if the
        prefix was already disabled; ``HandleNotFound`` when it is neither homed nor disabled."""
        return self._move_prefix(prefix, identity, check, disable=True)

    def enable_prefix(self, prefix: bytes, identity: str = "", check=None) -> int:
        """The reverse of ``disable_prefix``: back to ``prefixes``, logged as HOME."""
        return self._move_prefix(prefix, identity, check, disable=False)

    def _move_prefix(self, prefix: bytes, identity: str, check, *, disable: bool) -> int:
        ident = _identity(identity)
        if self.disabled_db is None:
            raise StoreError(f"store at {self.path} is open read-only")
        src, dst = self.prefixes_db, self.disabled_db
        if not disable:
            src, dst = dst, src
        name = prefix.decode("utf-8", "replace")
        with self._writing() as txn:
            if check is not None:
                check(_View(self, txn))
            blob = txn.get(prefix, db=src)
            if blob is None:
                if txn.get(prefix, db=dst) is not None:
                    return 0  # already in the wanted state: nothing changes, nothing logged
                raise HandleNotFound(f"prefix {name} is not homed here")
            txn.delete(prefix, db=src)
            txn.put(prefix, blob, db=dst)
            log = _Log(txn, self.changes_db, ident)
            if disable:
                log.append(S.ACTION_UNHOME_PREFIX, 0, prefix, blob, None)
            else:
                log.append(S.ACTION_HOME_PREFIX, 0, prefix, None, blob)
            return log.last()

    # -- the takeover copy (schema.TAKEOVER) ----------------------------------------------
    def takeover_lookup(self, prefix: bytes, key: bytes | None) -> TakeoverHit | None:
        """What the copy says about an identifier, in one snapshot: None when no source homes
        ``prefix`` (a prefix key, as in ``prefixes``); else the source, since when it is down
        and the copied record of ``key`` (None: not in the copy) — with ``key`` None, the
        copied prefix handle of ``prefix``."""
        if self.takeover_db is None:
            return None
        db = self.takeover_db
        with self.env.begin() as txn:
            entry = txn.get(S.TAKEOVER_PREFIX + prefix, db=db)
            if entry is None:
                return None
            source, prefix_blob = _split_prefix_entry(entry)
            down = txn.get(S.TAKEOVER_DOWN + source.encode("utf-8"), db=db)
            blob = prefix_blob if key is None else txn.get(key, db=db)
            return TakeoverHit(source, None if down is None else S.TAKEOVER_U64.unpack(down)[0],
                               None if blob is None else bytes(blob))  # fmt: skip

    def takeover_last(self, source: str) -> int:
        """The last change-log id of ``source`` applied to the copy (0: none)."""
        if self.takeover_db is None:
            return 0
        with self.env.begin() as txn:
            found = txn.get(S.TAKEOVER_LAST + source.encode("utf-8"), db=self.takeover_db)
        return 0 if found is None else S.TAKEOVER_U64.unpack(found)[0]

    def takeover_prefixes(self) -> dict[bytes, str]:
        """Prefix key → the source that homes it, for every prefix in the copy."""
        return {k: _split_prefix_entry(v)[0] for k, v in self._takeover_tagged(S.TAKEOVER_PREFIX)}

    def takeover_get(self, key: bytes) -> bytes | None:
        """A copied record (a records key), or None."""
        if self.takeover_db is None:
            return None
        with self.env.begin() as txn:
            return txn.get(key, db=self.takeover_db)

    def takeover_apply(self, source: str, last: int, records=(), prefixes=()) -> int:
        """Apply one page of ``source``'s changes to the copy in one write transaction and
        record ``last`` as its last applied change id there: ``records`` are ``(records key,
        stored record or None)`` pairs — None deletes the copy —, ``prefixes`` ``(prefix key,
        stored prefix handle or None)`` — a prefix deleted only if ``source`` homes it.  Puts
        of the same bytes are skipped, so applying a page twice changes nothing.  Returns the
        entries changed.  Nothing is logged in ``changes``."""
        db = self._takeover_writable()
        name = source.encode("utf-8")
        if not 0 < len(name) <= 0xFFFF:
            raise StoreError("a takeover source is 1 to 65535 bytes of UTF-8")
        changed = 0
        with self._writing() as txn:
            for key, blob in sorted(records, key=_FIRST):
                if key.startswith(b"\x00"):
                    raise StoreError(f"not a records key: {key!r}")
                if blob is None:
                    changed += txn.delete(key, db=db)
                elif txn.get(key, db=db) != blob:
                    txn.put(key, blob, db=db)
                    changed += 1
            for prefix, blob in sorted(prefixes, key=_FIRST):
                k = S.TAKEOVER_PREFIX + prefix
                old = txn.get(k, db=db)
                if blob is None:
                    if old is not None and _split_prefix_entry(old)[0] == source:
                        changed += txn.delete(k, db=db)
                    continue
                entry = S.TAKEOVER_SOURCE_LEN.pack(len(name)) + name + blob
                if old != entry:
                    txn.put(k, entry, db=db)
                    changed += 1
            txn.put(S.TAKEOVER_LAST + name, S.TAKEOVER_U64.pack(last), db=db)
        return changed

    def takeover_set_down(self, source: str, since_ms: int | None) -> None:
        """Publish that ``source`` is unreachable since ``since_ms`` (None: reachable)."""
        db = self._takeover_writable()
        k = S.TAKEOVER_DOWN + source.encode("utf-8")
        with self._writing() as txn:
            if since_ms is None:
                txn.delete(k, db=db)
            else:
                txn.put(k, S.TAKEOVER_U64.pack(since_ms), db=db)

    def takeover_down(self) -> dict[str, int]:
        """Source → ms since 1970 since when it is unreachable, for every source down."""
        return {k.decode("utf-8"): S.TAKEOVER_U64.unpack(v)[0]
                for k, v in self._takeover_tagged(S.TAKEOVER_DOWN)}

    def _takeover_tagged(self, tag: bytes) -> list[tuple[bytes, bytes]]:
        """(key without ``tag``, value) of every entry of the copy's ``tag`` namespace."""
        if self.takeover_db is None:
            return []
        out = []
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.takeover_db)
            if cur.set_range(tag):
                for k, v in cur:
                    if not k.startswith(tag):
                        break
                    out.append((bytes(k[len(tag) :]), bytes(v)))
        return out

    def _takeover_writable(self):
        if self.takeover_db is None:
            raise StoreError(f"store at {self.path} is open read-only")
        return self.takeover_db

    def close(self) -> None:
        with contextlib.suppress(lmdb.Error):
            self.env.close()


#: Records per ``putmulti`` call: it holds the GIL for its whole loop, and the worker's event
#: loop (UDP and HTTP answers) must get it back within about a millisecond.
_PUT_SLICE = 512


_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


@dataclasses.dataclass(frozen=True, slots=True)
class TakeoverHit:
    """``LmdbStore.takeover_lookup``: the source homing the prefix in the copy, since when it
    is unreachable (ms since 1970; None: not known to be down), the copied record (or None)."""

    source: str
    down_since_ms: int | None
    blob: bytes | None


def _split_prefix_entry(entry: bytes) -> tuple[str, bytes]:
    """A ``TAKEOVER_PREFIX`` value → (source, copied prefix-handle record)."""
    (n,) = S.TAKEOVER_SOURCE_LEN.unpack_from(entry)
    p = S.TAKEOVER_SOURCE_LEN.size
    return bytes(entry[p : p + n]).decode("utf-8"), bytes(entry[p + n :])


class _SomeExist(Exception):
    """``insert``: a key of the chunk exists already (internal: caught there)."""


class _View:
    """Reads inside one transaction: ``LmdbStore.update`` plans, ``LmdbStore.view``."""

    def __init__(self, store: LmdbStore, txn) -> None:
        self._store, self.txn = store, txn

    def get_record(self, key: bytes) -> bytes | None:
        return self.txn.get(key, db=self._store.records_db)

    def get_prefix(self, prefix: bytes) -> bytes | None:
        return self.txn.get(prefix, db=self._store.prefixes_db)

    def get_disabled(self, prefix: bytes) -> bytes | None:
        db = self._store.disabled_db
        return None if db is None else self.txn.get(prefix, db=db)

    def prefixes(self) -> list[bytes]:
        return [k for k in self.txn.cursor(db=self._store.prefixes_db).iternext(values=False)]

    def disabled_prefixes(self) -> list[bytes]:
        db = self._store.disabled_db
        return [] if db is None else list(self.txn.cursor(db=db).iternext(values=False))

    def list_keys(self, prefix: bytes, offset: int = 0, limit: int | None = None
                  ) -> tuple[int, list[bytes]]:  # fmt: skip
        return _list_keys(self.txn, self._store.records_db, prefix, offset, limit)

    def get_meta(self, name: bytes) -> bytes | None:
        return self.txn.get(name, db=self._store.meta_db)

    def put_meta(self, name: bytes, value: bytes) -> None:
        """Write a ``meta`` entry in this (write) transaction: it commits with the plan's
        changes or not at all (idempotency records of batches)."""
        self.txn.put(name, value, db=self._store.meta_db)

    def delete_meta(self, name: bytes) -> bool:
        """Delete a ``meta`` entry in this (write) transaction; False when it was absent."""
        return self.txn.delete(name, db=self._store.meta_db)

    def meta_range(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """``meta`` entries whose names start with ``prefix``, in name order (metadata
        templates of a scope).  Consume it inside the transaction."""
        cur = self.txn.cursor(db=self._store.meta_db)
        if not cur.set_range(prefix):
            return
        for k, v in cur:
            if not k.startswith(prefix):
                return
            yield k, v


class _Log:
    """Appends change-log entries (schema.CHANGES) inside one write transaction."""

    def __init__(self, txn, changes_db, ident: bytes, stats_db=None) -> None:
        self.txn, self.db, self.stats_db = txn, changes_db, stats_db
        self.now_ms = int(time.time() * 1000)
        self.counts: dict[tuple[bytes, bytes], int] = {}  # (prefix, metric) → n, schema.STATS
        cur = txn.cursor(db=changes_db)
        self.next_id = self.first = (S.TXN_ID.unpack(cur.key())[0] if cur.last() else 0) + 1
        self.tail = S.IDENTITY_LEN.pack(len(ident)) + ident

    def append(self, action: int, op: int, key: bytes, old: bytes | None,
               new: bytes | None, detail: bytes = b"", *, after: bytes | None = None
               ) -> None:  # fmt: skip
        """``after``: the digest to log as "after" when it is not that of ``new``."""
        if len(key) > 0xFFFF:
            raise StoreError("key too long for the change log")
        entry = b"".join((S.CHANGE.pack(action, self.now_ms, op, len(key)), key, self.tail,
                          _digest(old), after or _digest(new), detail))  # fmt: skip
        self.txn.put(S.TXN_ID.pack(self.next_id), entry, db=self.db, append=True)
        self.next_id += 1
        metric = _REGISTRATION.get(action)
        if metric is not None:
            self.count(key[: key.find(b"/")], metric)

    def count(self, prefix: bytes, metric: bytes, n: int = 1) -> None:
        k = (prefix, metric)
        self.counts[k] = self.counts.get(k, 0) + n

    def add_counts(self) -> None:
        """Add the registrations counted to schema.STATS, in this transaction."""
        if self.counts and self.stats_db is not None:
            hour = self.now_ms // 3_600_000
            _add_counts(self.txn, self.stats_db, sorted(
                (_stats_key(p, hour, m), n) for (p, m), n in self.counts.items()))
            self.counts.clear()

    def last(self) -> int:
        """The last id appended, 0 if none."""
        return self.next_id - 1 if self.next_id > self.first else 0


_REGISTRATION = {S.ACTION_CREATE: S.STATS_REG_CREATE, S.ACTION_UPDATE: S.STATS_REG_UPDATE,
                 S.ACTION_DELETE: S.STATS_REG_DELETE}


def _stats_key(prefix: bytes, hour: int, metric: bytes) -> bytes:
    return b"".join((prefix, S.STATS_SEPARATOR, S.STATS_HOUR.pack(hour), metric))


def _split_stats_key(key: bytes) -> tuple[bytes, int, bytes]:
    cut = key.find(S.STATS_SEPARATOR)  # a prefix holds no NUL (resolver.identifier)
    (hour,) = S.STATS_HOUR.unpack_from(key, cut + 1)
    return bytes(key[:cut]), hour, bytes(key[cut + 1 + S.STATS_HOUR.size :])


def _add_counts(txn, db, rows) -> None:
    """Add each ``(key, n)`` of ``rows`` (sorted by key) to its u64 counter."""
    get, put, count = txn.get, txn.put, S.STATS_COUNT
    for key, n in rows:
        old = get(key, None, db)
        put(key, count.pack(min(n + (count.unpack(old)[0] if old is not None else 0),
                                0xFFFFFFFFFFFFFFFF)), db=db)  # fmt: skip


def _identity(identity: str) -> bytes:
    ident = identity.encode("utf-8")
    if len(ident) > 0xFFFF:
        raise StoreError("identity too long for the change log")
    return ident


def _digest(blob: bytes | None) -> bytes:
    return S.NO_DIGEST if blob is None else hashlib.sha256(blob).digest()


def decode_change(txn_id: int, v: bytes) -> LoggedChange:
    """A ``changes`` value (format 2, schema.CHANGES) → LoggedChange."""
    action, ms, op, klen = S.CHANGE.unpack_from(v)
    p = S.CHANGE.size
    key = bytes(v[p : p + klen])
    p += klen
    (ilen,) = S.IDENTITY_LEN.unpack_from(v, p)
    p += S.IDENTITY_LEN.size
    identity = bytes(v[p : p + ilen]).decode("utf-8")
    p += ilen
    before, after = bytes(v[p : p + S.DIGEST_SIZE]), bytes(v[p + S.DIGEST_SIZE : p + 2 * S.DIGEST_SIZE])
    p += 2 * S.DIGEST_SIZE
    detail: tuple[bytes, ...] = ()
    if action == S.ACTION_IMPORT and len(v) > p + S.IMPORT_COUNT.size:
        (count,) = S.IMPORT_COUNT.unpack_from(v, p)
        detail = tuple(bytes(v[p + S.IMPORT_COUNT.size :]).split(S.IMPORT_SEPARATOR))
        if len(detail) != count:
            raise StoreError(f"change {txn_id}: import detail lists {len(detail)} keys, "
                             f"not {count}")  # fmt: skip
    return LoggedChange(txn_id, action, ms, key, op, identity,
                        None if before == S.NO_DIGEST else before,
                        None if after == S.NO_DIGEST else after, detail)  # fmt: skip


def upgrade_v1_changes(txn, changes_db) -> int:
    """Rewrite every format-1 change-log entry (action, time, key) as format 2 (op 0, no
    identity, no digests: v1 did not record them).  Returns the entries rewritten."""
    n = 0
    tail = S.IDENTITY_LEN.pack(0) + S.NO_DIGEST + S.NO_DIGEST
    cur = txn.cursor(db=changes_db)
    for k, v in cur:
        action, ms = S.CHANGE_V1.unpack_from(v)
        key = bytes(v[S.CHANGE_V1.size :])
        cur.put(k, S.CHANGE.pack(action, ms, 0, len(key)) + key + tail)
        n += 1
    return n


def _list_keys(txn, records_db, prefix: bytes, offset: int, limit: int | None
               ) -> tuple[int, list[bytes]]:  # fmt: skip
    start = prefix + b"/"
    total, keys = 0, []
    cur = txn.cursor(db=records_db)
    if not cur.set_range(start):
        return 0, []
    for key in cur.iternext(keys=True, values=False):
        if not key.startswith(start):
            break
        if total >= offset and (limit is None or len(keys) < limit):
            keys.append(key)
        total += 1
    return total, keys
