"""The LMDB environment's layout: named databases, key and value formats, FORMAT_VERSION.

Every line that depends on a key layout says ``# KEY_FORMAT``.  Changing any format here
means bumping ``FORMAT_VERSION``; a store of another version is refused at open.
"""

import struct

#: Version of everything below.  Stored in ``meta`` under ``format_version`` as ASCII digits.
#: 2: change-log entries name the operation, the identity and digests of before/after (v1 had
#: action, time and key only; a writable open upgrades a v1 store in place).
FORMAT_VERSION = 2

#: ``records``: key = normalised identifier (ASCII-upper-cased UTF-8, resolver.identifier)
#: # KEY_FORMAT; value = a stored record (layout v1, resolver.record).
RECORDS = b"records"
#: ``prefixes``: key = normalised prefix without ``0.NA/`` (``88.118.8``) # KEY_FORMAT;
#: value = the stored record of the prefix handle ``0.NA/<prefix>``.  Presence = homed here.
PREFIXES = b"prefixes"
#: ``changes``: key = u64 big-endian transaction id, monotonic from 1 # KEY_FORMAT;
#: value (v2) =
#:
#:     u8  action       ACTION_* below: what happened to the key
#:     u64 time         ms since 1970 UTC
#:     u16 op           Handle op code that made the change (OC 100 create, 102 add value, ...);
#:                      0 = bulk load or operator tool
#:     u16 key length   then the affected key (a records key, or a prefixes key for prefix actions)
#:     u16 identity length, then the identity "index:handle" in UTF-8 (empty: local operator)
#:     32 B SHA-256 of the stored record before (zeros: none), 32 B SHA-256 after (zeros: none)
#:
#: Every write to ``records`` or ``prefixes`` appends its entry in the same transaction: the
#: workers' record caches (native.RecordCache) forget changed keys by reading this log, and
#: replication, upstream sync and the audit trail read it.
CHANGES = b"changes"
#: ``meta``: key = ASCII name; value = ASCII or raw bytes (format_version, created, node_id,
#: session_key; ``handle_session:<16-byte id hash>`` = "expiry:identity" of an authenticated
#: REST session, registry.sessions; ``idempotency:…`` batch answers, registry.service;
#: ``template:<scope>:<name>:<version>`` and ``uniq:…``, registry.templates; ``import:job:``,
#: ``import:err:`` and ``import:key:`` entries of import jobs, registry.imports — each module
#: documents its own layout).
META = b"meta"
#: ``disabled``: key = normalised prefix without ``0.NA/``, as in ``prefixes`` # KEY_FORMAT;
#: value = the stored record of the prefix handle of a prefix the operator disabled.
#:
#: Disabling moves the prefix handle from ``prefixes`` to here in one write transaction that
#: logs ``ACTION_UNHOME_PREFIX`` (before = its digest, after = none); enabling moves it back
#: and logs ``ACTION_HOME_PREFIX`` (before = none, after = its digest); both with op 0.  Every
#: reader takes presence in ``prefixes`` as "held", so identifiers under a disabled prefix
#: resolve as "not here" (Handle RC 301, HTTP 400) on every front-end and cannot be written,
#: while their records stay in ``records``.  A key is in at most one of ``prefixes`` and
#: ``disabled``: homing a disabled prefix is refused until it is enabled.
#:
#: Added without a format bump: a store that lacks it has nothing disabled (a read-only open
#: sees it as empty; a writable open creates it).
DISABLED = b"disabled"
#: ``takeover``: a top-level node's copy of its secondaries' data (issue 7 §7, emergency
#: takeover; idis.md §1.4), pulled from their change logs by ``resolver.upstream.takeover``.
#: Kept apart from ``records`` / ``prefixes``: nothing here is held or homed, no front-end's
#: fast path reads it, and writes here append nothing to ``changes`` (the copy is not ours to
#: replicate; the workers' record caches never hold copied records).  Entries:
#:
#: * key = a records key (normalised identifier, as in ``records``) # KEY_FORMAT; value = the
#:   copied stored record (layout v1, resolver.record: the source's public view of it).
#: * key = ``TAKEOVER_PREFIX`` + prefix key without ``0.NA/`` (as in ``prefixes``)
#:   # KEY_FORMAT; value = u16 source length, the source (its REST base URL, UTF-8), then the
#:   copied stored record of the prefix handle.  Presence = "this source homes that prefix";
#:   one prefix belongs to the source that homed it last.
#: * key = ``TAKEOVER_LAST`` + source # KEY_FORMAT; value = u64 big-endian: the last change-log
#:   id of that source applied here (absent: 0, nothing pulled yet).  Written in the same write
#:   transaction as the copies of that page of changes, so a pull resumes exactly after it.
#: * key = ``TAKEOVER_DOWN`` + source # KEY_FORMAT; value = u64 big-endian ms since 1970 UTC
#:   since when the source has been unreachable (absent: reachable, or not known to be down).
#:   Written by the node's upstream agent on state changes only; the workers read it to decide
#:   whether to answer from the copy.
#:
#: The tags start with NUL, which no records key holds, so the namespaces cannot collide.
#: Added without a format bump: a writable open creates it empty; a read-only open of an older
#: store sees no copy.
TAKEOVER = b"takeover"
TAKEOVER_PREFIX = b"\x00prefix:"  # KEY_FORMAT
TAKEOVER_LAST = b"\x00last:"  # KEY_FORMAT
TAKEOVER_DOWN = b"\x00down:"  # KEY_FORMAT
TAKEOVER_SOURCE_LEN = struct.Struct(">H")
TAKEOVER_U64 = struct.Struct(">Q")

#: ``stats``: the node's counters per prefix and hour (issue 7 §6; idis.md §1.4 upward
#: statistics).  Key = prefix | NUL | u32 big-endian hour | metric # KEY_FORMAT, where
#:
#: * prefix: a normalised prefix as in ``prefixes`` (``88.118.8``; ``0.NA`` for prefix
#:   handles), or empty for requests that named no valid identifier;
#: * hour: UNIX time // 3600 (UTC hours since 1970) of when the events were counted;
#: * metric: ASCII, ``<family>.<name>[.<detail>]`` — the store treats it as opaque bytes;
#:   the ``reg.*`` metrics are written by the store itself (below), the others by whoever
#:   counted them (``resolver.core.stats``, the upstream agent).
#:
#: Value = u64 big-endian count.  ``add_stats`` adds to a counter in one write transaction
#: (read, add, put), so counters only grow and concurrent writers (workers, the agent) never
#: lose an increment: LMDB serialises write transactions across processes.
#:
#: Registrations are counted by the store in the write transaction that makes them, so the
#: figures are those of the data: ``reg.create`` (a record created, imports included),
#: ``reg.update`` (a record's values changed), ``reg.delete`` (a record deleted).
#: Nothing here is logged in ``changes``.  Added without a format bump: a writable open
#: creates it empty; a read-only open of an older store sees no counters.
STATS = b"stats"
STATS_SEPARATOR = b"\x00"
STATS_HOUR = struct.Struct(">I")  # KEY_FORMAT
STATS_COUNT = struct.Struct(">Q")
STATS_REG_CREATE = b"reg.create"
STATS_REG_UPDATE = b"reg.update"
STATS_REG_DELETE = b"reg.delete"

ALL_DATABASES = (RECORDS, PREFIXES, CHANGES, META, DISABLED, TAKEOVER, STATS)

TXN_ID = struct.Struct(">Q")  # KEY_FORMAT
CHANGE = struct.Struct(">BQHH")  # action, time, op, key length; then key, identity, digests
CHANGE_V1 = struct.Struct(">BQ")  # format 1: action, time; then the key
IDENTITY_LEN = struct.Struct(">H")
DIGEST_SIZE = 32  # SHA-256
NO_DIGEST = bytes(DIGEST_SIZE)

#: Change actions, numbered as Handle.net transactions (handle.md §6).
ACTION_CREATE = 1
ACTION_DELETE = 2
ACTION_UPDATE = 3
ACTION_HOME_PREFIX = 4  # also: a disabled prefix enabled (DISABLED)
ACTION_UNHOME_PREFIX = 5  # also: a prefix disabled (DISABLED)
#: One entry per committed import chunk (registry.imports): key = ``import:<job id>:<first
#: line>-<last line>``, op 0, before = none, after = SHA-256 of the concatenated records the
#: chunk created (in the order of the detail); after the digests, the per-identifier detail:
#:
#:     u32 n, then the n records keys (ascending) joined by b"\n" (a key holds no control byte)
#:
#: One entry instead of n, and one digest over the chunk instead of n: a chunk of 20,000
#: creations costs one log put and one hash (which runs without the GIL).  Every identifier of
#: the detail was created (never updated) by that transaction, so the workers' record caches,
#: which hold only records they have read, have nothing to forget for it.  Added without a
#: format bump: entries of the other actions are unchanged.
ACTION_IMPORT = 6
IMPORT_COUNT = struct.Struct(">I")
IMPORT_SEPARATOR = b"\n"

META_FORMAT_VERSION = b"format_version"
META_CREATED = b"created"
