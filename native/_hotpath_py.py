"""Pure-Python twin of the hot path: the normative reference for ``native._hotpath``.

Every function here has a Cython twin with the same name, signature and output bytes; the
parity tests hold them together.  Imports the standard library only: the stored record layout
is restated in ``native.constants`` and checked against ``resolver.record`` by a test.
"""

from __future__ import annotations

import collections
import hashlib
import re

from native.constants import (
    ACTION_HOME_PREFIX, ACTION_UNHOME_PREFIX, ALL_PUBLIC, CHANGE_HEADER, CHANGE_KEY_LENGTH,
    ENTRY_OVERHEAD, FLAG_PUBLIC_ONLY,
    RESYNC_LIMIT, DIR_SIZE, FLAG_REQUEST_DIGEST, FLAGS_NOT_FAST, HEADER_SIZE, LAYOUT_VERSION,
    MAX_DATAGRAM, MAX_HANDLE, MAX_MESSAGE, MAX_PREFIX, NA_PREFIX, PERM_PUBLIC_READ, PROTOCOL_MAJOR,
    PROTOCOL_MINOR, PUMP_BATCH, UDP_PACKET, VALUE_MIN, VALUE_PERMS, VALUE_TYPE,
)  # fmt: skip

_HEADER_LEN = 24

_I = int.from_bytes
#: C0 controls, DEL, and C1 controls (U+0080..U+009F = C2 80..C2 9F once UTF-8 is valid).
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]")


def _upper(b: bytes) -> bytes:
    return b.upper()  # bytes.upper folds ASCII only, as Handle.net does


def normalize_key(handle: bytes, case_sensitive: bool = False) -> bytes | None:
    """Identifier bytes (UTF-8, as the client wrote them) → storage key, or None if invalid.

    Rules (handle.md §1): UTF-8 only; 1..2048 bytes; no C0/C1 control characters or DEL;
    split at the first ``/``; a name without ``/`` means ``0.NA/<name>``; the prefix is
    1..255 bytes of dot-separated non-empty segments; the suffix is non-empty.  The key is the
    ASCII-upper-cased handle; with ``case_sensitive`` only the prefix is folded (and all of a
    ``0.NA/`` handle, whose suffix is itself a prefix).
    """
    n = len(handle)
    if n == 0 or n > MAX_HANDLE:
        return None
    try:
        handle.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _CONTROL.search(handle) is not None:
        return None
    slash = handle.find(b"/")
    if slash < 0:
        prefix, suffix = NA_PREFIX, handle
        if not _prefix_ok(handle):
            return None
    else:
        prefix, suffix = handle[:slash], handle[slash + 1 :]
        if not suffix or not _prefix_ok(prefix):
            return None
    prefix = _upper(prefix)
    if not case_sensitive or prefix == NA_PREFIX:
        suffix = _upper(suffix)
    return prefix + b"/" + suffix


def _prefix_ok(prefix: bytes) -> bool:
    return (
        0 < len(prefix) <= MAX_PREFIX
        and prefix[:1] != b"."
        and prefix[-1:] != b"."
        and b".." not in prefix
    )


def json_escape(handle: bytes) -> bytes:
    """A validated identifier as the inside of a JSON string (orjson's escaping for it)."""
    if b"\\" in handle:
        handle = handle.replace(b"\\", b"\\\\")
    if b'"' in handle:
        handle = handle.replace(b'"', b'\\"')
    return handle


def _type_matches(vtype: bytes, types) -> bool:
    # Reference Util.isParentTypeInArray: "X." matches X and X.*; else exact; ASCII-CI.
    vt = _upper(vtype)
    for t in types:
        t = _upper(t)
        if t[-1:] == b".":
            if vt.startswith(t) or vt == t[:-1]:
                return True
        elif vt == t:
            return True
    return False


_MISS = object()  # an authoritative miss: the prefix is held, the identifier is not


def _lookup(key: bytes, txn, records_db, prefixes_db, cache=None):
    """Stored record bytes; ``_MISS`` under a held prefix; None when the prefix is not held.
    Positional arguments to ``get``: py-lmdb parses keywords slowly (~0.4 µs a call).
    ``cache``: a ``RecordCache`` synced to ``txn``; a cached record's prefix is held (a prefix
    change empties the cache)."""
    if key[:5] == b"0.NA/":
        return txn.get(key[5:], None, prefixes_db)
    if cache is not None:
        blob = cache.get(key)
        if blob is not None:
            return blob
    if txn.get(key[: key.find(b"/")], None, prefixes_db) is None:
        return None
    blob = txn.get(key, None, records_db)
    if blob is None:
        return _MISS
    blob = bytes(blob)
    if cache is not None:
        cache.put(key, blob)
    return blob


class RecordCache:
    """Stored records by storage key, held in a worker's memory and exact to the store.

    A hot identifier then costs a hash lookup instead of a B-tree descent (on a store much
    larger than the CPU caches, ~2 µs of cache misses).  Exactness comes from the change log
    (DESIGN §4: every write appends, in its own transaction, one ``changes`` entry per key
    changed — key u64 txn id, value u8 action, u64 ms, u16 op, u16 key length, the key, ...): ``sync(txn)`` must be called
    with every new read transaction before the cache is used with it.  It reads the log from
    the last id it saw to the end of ``txn``'s snapshot and forgets each key changed; a prefix
    change (home, unhome), a gap or a backward step in the log, or more than ``RESYNC_LIMIT``
    changes at once (more than entries held, if that is more) forget everything.  After
    ``sync(txn)`` every entry equals the record ``txn`` reads under that key, and every cached
    record's prefix is held in it.

    ``get(key)`` → the record bytes or None; ``put(key, record)`` for a record just read from
    the synced transaction.  Memory is bounded by ``budget`` bytes (key + record +
    ``ENTRY_OVERHEAD`` per entry), the oldest entry evicted first; budget 0 holds nothing.
    ``changes_db`` is the store's ``changes`` database handle.
    """

    def __init__(self, budget, changes_db) -> None:
        self.budget = max(0, int(budget))
        self.changes_db = changes_db
        self.size = 0
        self.txn_id = -1  # the snapshot synced to; -1: never synced
        self.last_change = 0  # the last change-log id seen
        self._entries = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0

    def get(self, key: bytes):
        return self._entries.get(key)

    def put(self, key: bytes, blob: bytes) -> None:
        cost = len(key) + len(blob) + ENTRY_OVERHEAD
        if cost > self.budget or key in self._entries:
            return
        self._entries[key] = blob
        self.size += cost
        while self.size > self.budget:
            k, b = self._entries.popitem(last=False)
            self.size -= len(k) + len(b) + ENTRY_OVERHEAD

    def _forget(self, key: bytes) -> None:
        blob = self._entries.pop(key, None)
        if blob is not None:
            self.size -= len(key) + len(blob) + ENTRY_OVERHEAD

    def sync(self, txn) -> None:
        tid = txn.id()
        if tid == self.txn_id:
            return  # no write committed since: the same snapshot
        cur = txn.cursor(self.changes_db)
        last = int.from_bytes(cur.key(), "big") if cur.last() else 0
        if self.txn_id < 0 or last < self.last_change:
            self.clear()  # first use, or a log that went backwards (another store)
        elif last > self.last_change:
            if last - self.last_change > max(RESYNC_LIMIT, len(self._entries)):
                self.clear()
            elif cur.set_range((self.last_change + 1).to_bytes(8, "big")):
                expect = self.last_change + 1
                for k, v in cur:
                    if (int.from_bytes(k, "big") != expect or len(v) < CHANGE_HEADER
                            or v[0] in (ACTION_HOME_PREFIX, ACTION_UNHOME_PREFIX)):
                        self.clear()
                        break
                    klen = int.from_bytes(v[CHANGE_KEY_LENGTH:CHANGE_HEADER], "big")
                    self._forget(bytes(v[CHANGE_HEADER : CHANGE_HEADER + klen]))
                    expect += 1
        self.last_change = last
        self.txn_id = tid


def _fetch(handle: bytes, case_sensitive: bool, txn, records_db, prefixes_db, cache=None):
    """``_lookup`` of a handle as the client wrote it; None also for an invalid handle."""
    key = normalize_key(handle, case_sensitive)
    return None if key is None else _lookup(key, txn, records_db, prefixes_db, cache)


def _select(blob: bytes, types, indexes, json: bool):
    """The stored slices to answer with: ``(whole, parts, withheld)``.

    ``whole`` is the entire wire or JSON section when nothing is filtered out (no filters and
    every value public); otherwise ``parts`` lists the selected public values' slices, and
    ``withheld`` says whether a value the filters select was left out for lack of public read.
    None when the record's framing is inconsistent (the general path then reports it).
    """
    size = len(blob)
    if size < HEADER_SIZE or blob[0] != LAYOUT_VERSION:
        return None
    flags = blob[1]
    n = _I(blob[2:4], "big")
    wlen = _I(blob[4:8], "big")
    jlen = _I(blob[8:12], "big")
    wstart = HEADER_SIZE + DIR_SIZE * n
    jstart = wstart + wlen
    if jstart + jlen != size:
        return None
    if not types and not indexes and flags & ALL_PUBLIC:
        return (blob[jstart:] if json else blob[wstart:jstart]), None, False
    parts = []
    withheld = False
    for i in range(n):
        d = HEADER_SIZE + DIR_SIZE * i
        wo = _I(blob[d : d + 4], "big")
        wl = _I(blob[d + 4 : d + 8], "big")
        jo = _I(blob[d + 8 : d + 12], "big")
        jl = _I(blob[d + 12 : d + 16], "big")
        if wl < VALUE_MIN or wo + wl > wlen or jo + jl > jlen:
            return None
        v = wstart + wo
        if types or indexes:
            selected = False
            if indexes and _I(blob[v : v + 4], "big", signed=True) in indexes:
                selected = True
            if not selected and types:
                tl = _I(blob[v + VALUE_TYPE : v + VALUE_TYPE + 4], "big")
                t0 = v + VALUE_TYPE + 4
                if t0 + tl > v + wl:
                    return None
                selected = _type_matches(blob[t0 : t0 + tl], types)
            if not selected:
                continue
        if not blob[v + VALUE_PERMS] & PERM_PUBLIC_READ:
            withheld = True
            continue
        parts.append(blob[jstart + jo : jstart + jo + jl] if json else blob[v : v + wl])
    return None, parts, withheld


def http_resolve(handle, types, indexes, public_only, txn, records_db, prefixes_db,
                 case_sensitive=False):  # fmt: skip
    """Answer ``GET /api/handles/{handle}`` from the store, or return None.

    Arguments: ``handle`` the percent-decoded identifier bytes; ``types`` a tuple of type
    bytes or None; ``indexes`` a tuple of ints or None; ``public_only`` must be True (anything
    else is the general path's); a py-lmdb read transaction and the two named databases.

    Returns the complete JSON body of a resolution under a held prefix — responseCode 1 (hit),
    100 (authoritative miss) or 200 (every value filtered away) — or None for anything
    unusual: invalid identifier, prefix not held, non-public request, corrupt record.
    """
    if not public_only:
        return None
    blob = _fetch(handle, case_sensitive, txn, records_db, prefixes_db)
    if blob is None:
        return None
    if blob is _MISS:
        return b'{"responseCode":100,"handle":"' + json_escape(handle) + b'"}'
    sel = _select(bytes(blob), types, indexes, True)
    if sel is None:
        return None
    whole, parts, _withheld = sel  # public_only: withheld values are simply not shown
    head = b'{"responseCode":1,"handle":"' + json_escape(handle) + b'","values":'
    if whole is not None:
        return head + whole + b"}"
    if not parts:
        return b'{"responseCode":200,"values":[],"handle":"' + json_escape(handle) + b'"}'
    return head + b"[" + b",".join(parts) + b"]}"


# -- Handle protocol ---------------------------------------------------------------------------
# Layouts: resolver/protocols/handle/message.py.  Offsets below are from the datagram's start.

_ENV = 20
_HDR_END = 44  # envelope + header
_RC_SUCCESS = b"\0\0\0\x01"
_RC_NOT_FOUND = b"\0\0\0\x64"
_RC_VALUES_NOT_FOUND = b"\0\0\0\xc8"
_NO_CREDENTIAL = b"\0\0\0\0"
_EMPTY_MESSAGE = b"\0\0\0\0"


def _i32(d: bytes, o: int) -> int:
    return _I(d[o : o + 4], "big", signed=True)


def handle_resolve(data, txn, records_db, prefixes_db, case_sensitive=False, cache=None):
    """Answer a plain OC_RESOLUTION message (one UDP datagram or one TCP frame), or return None.

    Takes the complete request bytes (envelope + header + body + credential).  Answers only:
    protocol 2.x, no compression/encryption/truncation, sequence 0, op code 1, response code
    0, no certify/encrypt flags, no credential, a well-formed body, and an identifier under a
    held prefix.  Returns the complete reply message (envelope included, unsplit): RC 1 with
    the selected values, RC 100 for an authoritative miss, RC 200 when every value is filtered
    away — with the request digest when RD is set, at the negotiated version.  None otherwise.
    ``cache``: a ``RecordCache`` synced to ``txn`` (the answer is the same without it).
    """
    n = len(data)
    if n < _HDR_END + 16 or data[0] != PROTOCOL_MAJOR or data[2] & 0xE0:
        return None
    if data[12:16] != b"\0\0\0\0" or _I(data[16:20], "big") != n - _ENV or n - _ENV > MAX_MESSAGE:
        return None
    if data[20:28] != b"\0\0\0\x01\0\0\0\0":  # op code 1, response code 0
        return None
    opflags = _I(data[28:32], "big")
    if opflags & FLAGS_NOT_FAST:
        return None
    body_len = _I(data[40:44], "big")
    end = _HDR_END + body_len
    if end + 4 != n or data[end:n] != _NO_CREDENTIAL:
        return None
    # body: str handle, int4[] indexes, str[] types — every length checked against ``end``
    hl = _i32(data, _HDR_END)
    p = _HDR_END + 4 + hl
    if hl < 0 or p + 4 > end:
        return None
    handle = data[_HDR_END + 4 : p]
    count = _i32(data, p)
    p += 4
    if count < 0 or p + 4 * count + 4 > end:
        return None
    indexes = tuple(_i32(data, p + 4 * i) for i in range(count))
    p += 4 * count
    count = _i32(data, p)
    p += 4
    if count < 0 or count > (end - p) // 4:
        return None
    types = []
    for _ in range(count):
        tl = _i32(data, p)
        if tl < 0 or p + 4 + tl > end:
            return None
        types.append(data[p + 4 : p + 4 + tl])
        p += 4 + tl
    if p != end:
        return None
    blob = _fetch(handle, case_sensitive, txn, records_db, prefixes_db, cache)
    if blob is None:
        return None
    if blob is _MISS:
        rc, body = _RC_NOT_FOUND, _EMPTY_MESSAGE
    else:
        sel = _select(bytes(blob), tuple(types), indexes, False)
        if sel is None:
            return None
        whole, parts, withheld = sel
        if withheld and not opflags & FLAG_PUBLIC_ONLY:
            return None  # values without public read asked for: authentication (general path)
        if whole is not None:
            rc, body = _RC_SUCCESS, data[_HDR_END : _HDR_END + 4 + hl] + whole
        elif parts:
            values = len(parts).to_bytes(4, "big") + b"".join(parts)
            rc, body = _RC_SUCCESS, data[_HDR_END : _HDR_END + 4 + hl] + values
        else:
            rc, body = _RC_VALUES_NOT_FOUND, _EMPTY_MESSAGE
    # version: min(suggested, ours); suggested = low 2 bits of byte 2 + byte 3, or the actual
    # version when the suggested major is 0 (reference Encoder.decodeEnvelope)
    if data[2] & 0x03:
        version = min((data[2] & 0x03, data[3]), (PROTOCOL_MAJOR, PROTOCOL_MINOR))
    else:
        version = min((data[0], data[1]), (PROTOCOL_MAJOR, PROTOCOL_MINOR))
    if opflags & FLAG_REQUEST_DIGEST:
        request = data[_ENV:end]
        if version < (2, 1):
            body = b"\0\0\0\x10" + hashlib.md5(request).digest() + body
        elif version >= (2, 7):
            body = b"\x03" + hashlib.sha256(request).digest() + body
        else:
            body = b"\x02" + hashlib.sha1(request).digest() + body
    length = _HEADER_LEN + len(body) + 4
    if length > MAX_MESSAGE:
        return None  # too long to send: the general path answers with an error
    return b"".join((
        bytes((version[0], version[1], PROTOCOL_MAJOR, PROTOCOL_MINOR)),
        data[4:12],  # session id, request id
        b"\0\0\0\0",
        length.to_bytes(4, "big"),
        data[20:24], rc, data[28:40],  # op code; flags, serial, recursion, reserved, expiration
        len(body).to_bytes(4, "big"),
        body,
        _NO_CREDENTIAL,
    ))  # fmt: skip


# -- UDP datagram pump -----------------------------------------------------------------------

BATCH = PUMP_BATCH


class UdpPump:
    """Answers a burst of datagrams waiting on a non-blocking UDP socket.

    ``UdpPump(sock, cache=None)`` keeps the socket (and, in the Cython twin, receive buffers for
    ``BATCH`` datagrams of up to ``MAX_DATAGRAM`` bytes) and an optional ``RecordCache``.
    ``run(env, records_db, prefixes_db, case_sensitive)`` reads at most ``BATCH`` datagrams
    without blocking, then begins one read transaction of the py-lmdb environment ``env`` —
    after the burst arrived, so every answer sees each write committed before its request was
    sent — syncs the cache to it, and sends each reply
    ``handle_resolve`` gives that fits one packet (≤ ``UDP_PACKET`` bytes) to its sender.  It
    returns ``(read, rest)``: how many datagrams were read (0: none was waiting) and, in arrival
    order, ``(datagram, address, reply)`` for every datagram the caller must finish — reply None:
    the general path answers it; reply bytes: a reply too long for one packet, to be split.
    Every read datagram is either answered here or returned, except one whose sender is not an
    IP address (nothing to answer).  A reply the socket will not take now (full send buffer) is
    dropped, as UDP may, and counted in ``dropped``.  An error reading the socket before any
    datagram was read raises ``OSError``.  The Cython twin moves the burst with one
    ``recvmmsg`` and one ``sendmmsg`` where the system has them.
    """

    def __init__(self, sock, cache=None) -> None:
        self.sock = sock
        self.cache = cache
        self.dropped = 0

    def run(self, env, records_db, prefixes_db, case_sensitive=False):
        recvfrom, sendto = self.sock.recvfrom, self.sock.sendto
        burst = []
        while len(burst) < BATCH:
            try:
                burst.append(recvfrom(MAX_DATAGRAM))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if burst:
                    break
                raise
        rest = []
        if not burst:
            return 0, rest
        replies = []
        txn = env.begin()  # after the burst arrived: it sees every write made before it was sent
        try:
            if self.cache is not None:
                self.cache.sync(txn)
            for data, addr in burst:
                try:
                    out = handle_resolve(data, txn, records_db, prefixes_db, case_sensitive,
                                         self.cache)  # fmt: skip
                except Exception:
                    out = None  # the general path answers it, and reports the failure
                if out is not None and len(out) <= UDP_PACKET:
                    replies.append((out, addr))
                else:
                    rest.append((data, addr, out))
        finally:
            txn.abort()
        for out, addr in replies:
            try:
                sendto(out, addr)
            except OSError:
                self.dropped += 1
        return len(burst), rest
