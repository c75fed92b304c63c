"""LMDB implementation of the store contract (one environment, named databases of schema.py).

Durable by construction: the environment is always opened with sync and metasync on.  Every
write batch is one write transaction that also appends to ``changes``.  ``lmdb.MapFullError``
becomes ``StoreFull`` after LMDB has aborted the transaction, so the store stays readable.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterable, Iterator

import lmdb

from resolver.errors import StoreError, StoreFormatError, StoreFull
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
        self._check_format(readonly)

    def _check_format(self, readonly: bool) -> None:
        with self.env.begin(db=self.meta_db) as txn:
            found = txn.get(S.META_FORMAT_VERSION)
        if found is None and not readonly:
            with self.env.begin(write=True, db=self.meta_db) as txn:
                txn.put(S.META_FORMAT_VERSION, str(S.FORMAT_VERSION).encode())
                txn.put(S.META_CREATED, str(int(time.time())).encode())
            return
        if found != str(S.FORMAT_VERSION).encode():
            self.env.close()
            shown = found.decode("ascii", "replace") if found is not None else "none"
            raise StoreFormatError(
                f"store at {self.path} has format version {shown}; this idnode reads version "
                f"{S.FORMAT_VERSION} only — migrate it or point --data elsewhere"
            )

    # -- reads -----------------------------------------------------------------------------
    def read(self):
        """A read transaction (context manager); cheap, never blocks writers."""
        return self.env.begin(write=False)

    def get_record(self, key: bytes) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(key, db=self.records_db)

    def get_prefix(self, prefix: bytes) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(prefix, db=self.prefixes_db)

    def prefixes(self) -> list[bytes]:
        with self.env.begin() as txn:
            return [k for k, _ in txn.cursor(db=self.prefixes_db)]

    def list_keys(self, prefix: bytes, offset: int = 0, limit: int | None = None
                  ) -> tuple[int, list[bytes]]:  # fmt: skip
        """Keys under ``prefix/`` in key order: (total count, keys[offset:offset+limit])."""
        start = prefix + b"/"
        total, keys = 0, []
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.records_db)
            if not cur.set_range(start):
                return 0, []
            for key in cur.iternext(keys=True, values=False):
                if not key.startswith(start):
                    break
                if total >= offset and (limit is None or len(keys) < limit):
                    keys.append(key)
                total += 1
        return total, keys

    def last_txn_id(self) -> int:
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.changes_db)
            return S.TXN_ID.unpack(cur.key())[0] if cur.last() else 0

    def changes_since(self, txn_id: int) -> Iterator[LoggedChange]:
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.changes_db)
            if not cur.set_range(S.TXN_ID.pack(txn_id + 1)):
                return
            for k, v in cur:
                action, ms = S.CHANGE.unpack_from(v)
                yield LoggedChange(S.TXN_ID.unpack(k)[0], action, ms, bytes(v[S.CHANGE.size :]))

    def stat(self) -> dict:
        with self.env.begin() as txn:
            return {
                "records": txn.stat(self.records_db)["entries"],
                "prefixes": txn.stat(self.prefixes_db)["entries"],
                "changes": txn.stat(self.changes_db)["entries"],
            }

    # -- writes ----------------------------------------------------------------------------
    def write(self, changes: Iterable[Change]) -> int:
        """Apply a batch in one transaction (keys sorted); unchanged records are skipped."""
        batch = sorted(changes, key=lambda c: (c.prefix, c.key))
        if not batch:
            return 0
        now_ms = int(time.time() * 1000)
        try:
            with self.env.begin(write=True) as txn:
                cur = txn.cursor(db=self.changes_db)
                next_id = (S.TXN_ID.unpack(cur.key())[0] if cur.last() else 0) + 1
                first = next_id
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
                        txn.put(c.key, c.blob, db=db)
                        if c.prefix:
                            action = S.ACTION_HOME_PREFIX
                        else:
                            action = S.ACTION_UPDATE if old is not None else S.ACTION_CREATE
                    txn.put(S.TXN_ID.pack(next_id), S.CHANGE.pack(action, now_ms) + c.key,
                            db=self.changes_db, append=True)  # fmt: skip
                    next_id += 1
                return next_id - 1 if next_id > first else 0
        except lmdb.MapFullError:
            raise StoreFull(
                f"store at {self.path} is full (map_size {self.env.info()['map_size']} bytes): "
                "the batch was rolled back; raise map_size"
            ) from None
        except lmdb.Error as exc:
            raise StoreError(f"write failed: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(lmdb.Error):
            self.env.close()
