"""Bulk loading of handle records from JSON Lines (``idnode load FILE.jsonl``).

One JSON object per line: ``{"handle": "88.118.8/SN-1", "values": [<Handle v9 value>, …]}``
(values in the shapes of handle.md §7.2).  A line for ``0.NA/<prefix>`` homes that prefix with
the given prefix-handle values.  Lines are validated one by one; a bad line is reported with its
number and reason and skipped; good lines are written in sorted batches, one LMDB write
transaction per batch.  Loading the same file twice changes nothing: a value given without a
timestamp keeps its stored one when it is otherwise unchanged, and identical records are
skipped by the store and not logged.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterable, Iterator, TextIO

import orjson

from resolver.errors import CorruptRecord, IdnodeError, InvalidIdentifier
from resolver.identifier import Identifier
from resolver.record import Record, pack, unpack
from resolver.store import Change
from resolver.store.lmdb_store import LmdbStore
from resolver.valuejson import value_from_json

DEFAULT_BATCH = 10_000


@dataclasses.dataclass
class LoadReport:
    lines: int = 0
    loaded: int = 0
    prefixes: int = 0
    errors: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    last_txn_id: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclasses.dataclass(frozen=True, slots=True)
class Parsed:
    """One good line: where it goes, its record, and which values came without a timestamp."""

    key: bytes
    prefix: bool
    record: Record
    unstamped: frozenset[int]


def parse_line(line: bytes | str, *, case_sensitive: bool = False, now: int | None = None
               ) -> Parsed:  # fmt: skip
    """One JSON line → ``Parsed``; raises ``IdnodeError`` with the reason."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise IdnodeError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("handle"), str):
        raise IdnodeError('expected {"handle": "...", "values": [...]}')
    values = obj.get("values")
    if not isinstance(values, list):
        raise IdnodeError('"values" must be a list of handle values')
    ident = Identifier.parse(obj["handle"], case_sensitive=case_sensitive)
    record = Record(value_from_json(v, now=now) for v in values).validate()
    unstamped = frozenset(r.index for v, r in zip(values, record) if not v.get("timestamp"))
    if ident.is_prefix_handle:
        return Parsed(ident.suffix_key, True, record, unstamped)
    return Parsed(ident.key, False, record, unstamped)


def _keep_timestamps(store: LmdbStore, parsed: Parsed) -> Record:
    """A value given without a timestamp that equals the stored one keeps the stored timestamp
    (a timestamp is the time of the value's last change), so reloading a file is a no-op."""
    if not parsed.unstamped:
        return parsed.record
    old = store.get_prefix(parsed.key) if parsed.prefix else store.get_record(parsed.key)
    if old is None:
        return parsed.record
    try:
        stored = {v.index: v for v in unpack(old)}
    except CorruptRecord:
        return parsed.record
    kept = []
    for v in parsed.record:
        o = stored.get(v.index)
        if v.index in parsed.unstamped and o is not None and o.replace(timestamp=v.timestamp) == v:
            v = o
        kept.append(v)
    return Record(kept)


def _lines(source: TextIO | Iterable[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


def load(store: LmdbStore, source: TextIO | Iterable[str], *, case_sensitive: bool = False,
         batch_size: int = DEFAULT_BATCH, now: int | None = None) -> LoadReport:  # fmt: skip
    """Load every good line of ``source``; records must fall under a prefix homed here."""
    now = int(time.time()) if now is None else now
    report = LoadReport()
    homed = set(store.prefixes())
    batch: list[Change] = []
    for number, line in _lines(source):
        report.lines += 1
        try:
            parsed = parse_line(line, case_sensitive=case_sensitive, now=now)
            if parsed.prefix:
                homed.add(parsed.key)
                report.prefixes += 1
            else:
                prefix = parsed.key[: parsed.key.find(b"/")]
                if prefix not in homed:
                    raise InvalidIdentifier(
                        f"prefix {prefix.decode()} is not homed here: "
                        f"add a line for 0.NA/{prefix.decode()} first"
                    )
                report.loaded += 1
        except IdnodeError as exc:
            report.errors.append((number, exc.message))
            continue
        batch.append(Change(parsed.key, pack(_keep_timestamps(store, parsed)), parsed.prefix))
        if len(batch) >= batch_size:
            report.last_txn_id = store.write(batch) or report.last_txn_id
            batch = []
    if batch:
        report.last_txn_id = store.write(batch) or report.last_txn_id
    return report
