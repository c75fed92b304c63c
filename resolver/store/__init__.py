"""The store contract: keys and stored records in, bytes or None out.  No protocol here.

``Store`` is what the engine and the registry rely on; ``resolver.store.lmdb_store.LmdbStore``
is the implementation.  Keys are normalised identifiers / prefixes (``resolver.identifier``);
values are stored records (``resolver.record``), opaque at this layer.

Contract:
* ``get_record(key)`` / ``get_prefix(prefix)`` → the stored bytes, or ``None`` on a miss.
* ``write(changes, identity="")`` applies a batch of ``Change`` in one durable write
  transaction, sorted by key, appending one entry per effective change (with ``identity``) to
  the change log in that same transaction, and returns the last transaction id (0 if nothing
  changed).  Raises ``StoreFull`` (the batch is rolled back, reads keep working) or
  ``StoreError``.
* ``update(plan, identity="")`` is the read-check-write form: ``plan(view)`` runs inside the
  write transaction (``view.get_record``/``get_prefix``/``list_keys`` see it) and returns the
  changes to apply there; an exception from ``plan`` rolls everything back.
* ``read()`` is a context manager yielding a read transaction for callers that do several
  gets (the native hot path takes it together with the database handles).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One write: ``blob=None`` deletes.  ``prefix=True`` targets the prefixes database.
    ``op``: the Handle op code logged with it (0: bulk load, operator tool)."""

    key: bytes
    blob: bytes | None
    prefix: bool = False
    op: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class LoggedChange:
    """One change-log entry (schema.CHANGES); digests are SHA-256 of the stored records,
    None where there was no record."""

    txn_id: int
    action: int
    time_ms: int
    key: bytes
    op: int = 0
    identity: str = ""
    before: bytes | None = None
    after: bytes | None = None
    #: ``ACTION_IMPORT`` only: the records keys the chunk created (``after`` digests them all)
    detail: tuple[bytes, ...] = ()


class Store(Protocol):
    def get_record(self, key: bytes) -> bytes | None: ...
    def get_prefix(self, prefix: bytes) -> bytes | None: ...
    def write(self, changes: Iterable[Change], identity: str = "") -> int: ...
    def update(self, plan, identity: str = ""): ...
    def list_keys(self, prefix: bytes, offset: int = 0, limit: int | None = None
                  ) -> tuple[int, list[bytes]]: ...  # fmt: skip
    def changes_since(self, txn_id: int) -> Iterator[LoggedChange]: ...
    def close(self) -> None: ...
