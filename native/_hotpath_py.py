"""Pure-Python twin of the hot path: the normative reference for ``native._hotpath``.

Every function here has a Cython twin with the same name, signature and output bytes; the
parity tests hold them together.  Imports the standard library only: the stored record layout
is restated in ``native.constants`` and checked against ``resolver.record`` by a test.
"""

from __future__ import annotations

import base64
import collections
import csv
import hashlib
import io
import operator
import re
import struct
import time

from native.constants import (
    ACTION_HOME_PREFIX, ACTION_UNHOME_PREFIX, ALL_PUBLIC, CHANGE_HEADER, CHANGE_KEY_LENGTH,
    DEFAULT_PERMISSIONS, DEFAULT_TTL, ENTRY_OVERHEAD, FLAG_PUBLIC_ONLY, MAX_DATA_LENGTH, MAX_VALUES,
    RESYNC_LIMIT, DIR_SIZE, FLAG_REQUEST_DIGEST, FLAGS_NOT_FAST, HEADER_SIZE, LAYOUT_VERSION,
    MAX_DATAGRAM, MAX_HANDLE, MAX_MESSAGE, MAX_PREFIX, NA_PREFIX, PERM_PUBLIC_READ, PROTOCOL_MAJOR,
    PROTOCOL_MINOR, PUMP_BATCH, STRUCTURED_TYPES, UDP_PACKET, VALUE_MIN, VALUE_PERMS, VALUE_TYPE,
    TALLY_NOT_FOUND, TALLY_OK, TALLY_VALUES_NOT_FOUND,
    DNS_MAX_APEX, DNS_MAX_NAME, DNS_MAX_RDATA, DNS_MAX_TCP, DNS_MAX_TTL, DNS_MIN_UDP, DNS_NAPTR,
    DNS_NOW_LIMIT, DNS_TXT, DNS_URI, NAPTR_ORDER_BASE, NAPTR_PREFERENCE, TTL_ABSOLUTE,
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
    changed — key u64 txn id, value u8 action, u64 ms, u16 op, u16 key length, the key, ...):
    ``sync(txn)`` must be called with every new read transaction before the cache is used with
    it.  It reads the log from the last id it saw to the end of ``txn``'s snapshot and forgets
    each key changed; a prefix change (home, unhome), a gap or a backward step in the log, or
    more than ``RESYNC_LIMIT`` changes at once (more than entries held, if that is more) forget
    everything.  After ``sync(txn)`` every entry equals the record ``txn`` reads under that key,
    and every cached record's prefix is held in it.

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


def _check_tally(tally) -> None:
    """``tally`` is None or exactly a dict (``handle_resolve`` defines the contract)."""
    if tally is not None and type(tally) is not dict:
        raise TypeError(f"tally must be a dict or None, not {type(tally).__name__}")


def _count(tally: dict, key: bytes, outcome: str) -> None:
    """One reply more for the storage key's prefix (up to its first '/') and ``outcome``."""
    k = (key[: key.find(b"/")], outcome)
    tally[k] = tally.get(k, 0) + 1


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
                 case_sensitive=False, tally=None):  # fmt: skip
    """Answer ``GET /api/handles/{handle}`` from the store, or return None.

    Arguments: ``handle`` the percent-decoded identifier bytes; ``types`` a tuple of type
    bytes or None; ``indexes`` a tuple of ints or None; ``public_only`` must be True (anything
    else is the general path's); a py-lmdb read transaction and the two named databases.

    Returns the complete JSON body of a resolution under a held prefix — responseCode 1 (hit),
    100 (authoritative miss) or 200 (every value filtered away) — or None for anything
    unusual: invalid identifier, prefix not held, non-public request, corrupt record.

    ``tally``: counts each body returned, as ``handle_resolve`` defines — the outcome by
    responseCode (1 ``TALLY_OK``, 100 ``TALLY_NOT_FOUND``, 200 ``TALLY_VALUES_NOT_FOUND``).
    """
    _check_tally(tally)
    if not public_only:
        return None
    key = normalize_key(handle, case_sensitive)
    if key is None:
        return None
    blob = _lookup(key, txn, records_db, prefixes_db)
    if blob is None:
        return None
    if blob is _MISS:
        out = b'{"responseCode":100,"handle":"' + json_escape(handle) + b'"}'
        outcome = TALLY_NOT_FOUND
    else:
        sel = _select(bytes(blob), types, indexes, True)
        if sel is None:
            return None
        whole, parts, _withheld = sel  # public_only: withheld values are simply not shown
        head = b'{"responseCode":1,"handle":"' + json_escape(handle) + b'","values":'
        outcome = TALLY_OK
        if whole is not None:
            out = head + whole + b"}"
        elif parts:
            out = head + b"[" + b",".join(parts) + b"]}"
        else:
            out = b'{"responseCode":200,"values":[],"handle":"' + json_escape(handle) + b'"}'
            outcome = TALLY_VALUES_NOT_FOUND
    if tally is not None:
        _count(tally, key, outcome)
    return out


# -- Handle protocol ---------------------------------------------------------------------------
# Layouts: resolver/protocols/handle/message.py.  Offsets below are from the datagram's start.

_ENV = 20
_HDR_END = 44  # envelope + header
_RC_SUCCESS = b"\0\0\0\x01"
_RC_NOT_FOUND = b"\0\0\0\x64"
_RC_VALUES_NOT_FOUND = b"\0\0\0\xc8"
_NO_CREDENTIAL = b"\0\0\0\0"
_EMPTY_MESSAGE = b"\0\0\0\0"
_TALLY_FOR_RC = {_RC_SUCCESS: TALLY_OK, _RC_NOT_FOUND: TALLY_NOT_FOUND,
                 _RC_VALUES_NOT_FOUND: TALLY_VALUES_NOT_FOUND}  # fmt: skip


def _i32(d: bytes, o: int) -> int:
    return _I(d[o : o + 4], "big", signed=True)


def handle_resolve(data, txn, records_db, prefixes_db, case_sensitive=False, cache=None,
                   tally=None):  # fmt: skip
    """Answer a plain OC_RESOLUTION message (one UDP datagram or one TCP frame), or return None.

    Takes the complete request bytes (envelope + header + body + credential).  Answers only:
    protocol 2.x, no compression/encryption/truncation, sequence 0, op code 1, response code
    0, no certify/encrypt flags, no credential, a well-formed body, and an identifier under a
    held prefix.  Returns the complete reply message (envelope included, unsplit): RC 1 with
    the selected values, RC 100 for an authoritative miss, RC 200 when every value is filtered
    away — with the request digest when RD is set, at the negotiated version.  None otherwise.
    ``cache``: a ``RecordCache`` synced to ``txn`` (the answer is the same without it).

    ``tally`` (the fast paths' resolution statistics; defined here for ``http_resolve``,
    ``dns_answer`` and ``UdpPump`` too): None, or a ``dict`` — exactly, not a subclass, whose
    methods the Cython twin would bypass; anything else raises ``TypeError`` at the call, even
    for a request then declined.  Every reply returned adds one to ``tally[(prefix,
    outcome)]`` (a missing key counts from 0): ``prefix`` the storage key (``normalize_key``'s)
    up to its first ``/`` — ``b"0.NA"`` for a prefix handle —, ``outcome`` ``TALLY_OK`` (RC 1),
    ``TALLY_NOT_FOUND`` (RC 100) or ``TALLY_VALUES_NOT_FOUND`` (RC 200): the values of
    ``resolver.errors.Outcome`` members.  A call that returns None (declined, too long) or
    raises counts nothing; the answer bytes are the same with or without ``tally``.  The caller
    drains the dict (swapping in a new one is safe between calls).
    """
    _check_tally(tally)
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
    key = normalize_key(handle, case_sensitive)
    if key is None:
        return None
    blob = _lookup(key, txn, records_db, prefixes_db, cache)
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
    if tally is not None:
        _count(tally, key, _TALLY_FOR_RC[rc])
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


# -- stored records from JSON values ---------------------------------------------------------

_VALUE_KEYS = frozenset(("index", "type", "data", "ttl", "permissions"))
_STRUCTURED = frozenset(STRUCTURED_TYPES)
_INT4_MIN, _INT4_MAX = -0x80000000, 0x7FFFFFFF
#: Data bytes that "look like binary" (reference Util.looksLikeBinary): C0 controls but
#: 0x09–0x13, and DEL.  Such data is shown as base64, which this path does not write.
_BINARY = re.compile(rb"[\x00-\x08\x14-\x1f\x7f]")
#: orjson's string escaping: '"', '\\' and the C0 controls (short forms where JSON has one,
#: else \u00xx in lower-case hex); everything else, DEL, U+2028 and '/' included, is raw UTF-8.
_ESCAPES = {chr(c): f"\\u{c:04x}" for c in range(0x20)} | {
    "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
_ESCAPED = re.compile(r'[\x00-\x1f"\\]')
_FIXED = struct.Struct(">iiBiBi")  # index, timestamp, ttl type, ttl, permissions, type length
_INT4 = struct.Struct(">i")
_HEADER = struct.Struct(">BBHII")
_DIRENTRY = struct.Struct(">IIII")


def _json_text(s: str) -> bytes:
    if _ESCAPED.search(s) is not None:
        s = _ESCAPED.sub(lambda m: _ESCAPES[m.group()], s)
    return s.encode("utf-8")


def pack_json_values(values, now, now_text, reserved_index):
    """The stored record (layout v1, ``resolver.record``) of one identifier's JSON values, or None.

    ``values`` is the parsed JSON array of Handle.net v9 value objects (as ``orjson.loads`` gives
    it: dict, list, str, int, bool, None), ``now`` the server time (int seconds) every value gets
    as its timestamp, ``now_text`` its ISO-8601 text (``valuejson.iso_utc(now)`` as UTF-8, made
    once by the caller), ``reserved_index`` an index this path leaves to the caller (the IDIS
    template value, 1001, which needs template validation).

    Returns exactly ``record.pack(Record(value_from_json(v, now=now) for v in values))``, or
    None — decline: the caller runs that general path, which gives the same bytes or the precise
    ``InvalidValue``.  Accepted (everything else declines, every error included):

    - ``values`` a list of 1..MAX_VALUES dicts, no index twice;
    - each dict has ``index``, ``type``, ``data`` and at most ``ttl`` and ``permissions`` besides;
    - ``index`` an int (not bool) in 1..2^31-1, not ``reserved_index``;
    - ``type`` a non-empty str whose ``upper()`` is none of STRUCTURED_TYPES (their JSON data is
      typed, handle.md §7.2);
    - ``data`` a str, or exactly ``{"format": "string", "value": str}``; its UTF-8 at most
      MAX_DATA_LENGTH bytes that do not look like binary (no C0 control but 0x09–0x13, no DEL);
    - ``ttl`` absent, None (→ DEFAULT_TTL) or an int32 (relative seconds);
    - ``permissions`` absent (→ DEFAULT_PERMISSIONS), ``"*"`` (→ 1111) or a str of 0/1 digits
      whose last four are the bits (admin read, admin write, public read, public write);
    - no str with a lone surrogate (not UTF-8); ``now`` in 0..2^31-1 (0: no ``timestamp``).

    Each value's JSON is ``{"index","type","data":{"format":"string","value"}[,"permissions"],
    "ttl"[,"timestamp"]}`` — ``permissions`` only when not the default, as four binary digits —
    in orjson's compact form and string escaping.
    """
    if type(values) is not list or not 0 < len(values) <= MAX_VALUES:
        return None
    if type(now) is not int or not 0 <= now <= _INT4_MAX:
        return None
    tail = b',"timestamp":"' + now_text + b'"}' if now else b"}"
    wires, jsons, seen = [], [], set()
    all_public = True
    for obj in values:
        if type(obj) is not dict or not obj.keys() <= _VALUE_KEYS:
            return None
        index, vtype, data = obj.get("index"), obj.get("type"), obj.get("data")
        if type(index) is not int or not 0 < index <= _INT4_MAX or index == reserved_index \
                or index in seen:  # fmt: skip
            return None
        seen.add(index)
        if type(vtype) is not str or not vtype or vtype.upper() in _STRUCTURED:
            return None
        if type(data) is dict:
            if len(data) != 2 or type(data.get("format")) is not str \
                    or data["format"] != "string":  # fmt: skip
                return None
            data = data.get("value")
        if type(data) is not str:
            return None
        ttl = obj.get("ttl")
        if ttl is None:
            ttl = DEFAULT_TTL
        elif type(ttl) is not int or not _INT4_MIN <= ttl <= _INT4_MAX:
            return None
        perms = DEFAULT_PERMISSIONS
        if "permissions" in obj:
            p = obj["permissions"]
            if type(p) is not str:
                return None
            if p == "*":
                perms = 0x0F
            elif p and not p.strip("01"):
                perms = int(p[-4:], 2)
            else:
                return None
        try:
            tb, db = vtype.encode("utf-8"), data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate
            return None
        if len(db) > MAX_DATA_LENGTH or _BINARY.search(db) is not None:
            return None
        all_public = all_public and bool(perms & PERM_PUBLIC_READ)
        wires.append(b"".join((_FIXED.pack(index, now, 0, ttl, perms, len(tb)), tb,
                               _INT4.pack(len(db)), db, b"\0\0\0\0")))  # fmt: skip
        js = b'{"index":%d,"type":"%s","data":{"format":"string","value":"%s"}' % (
            index, _json_text(vtype), _json_text(data))  # fmt: skip
        if perms != DEFAULT_PERMISSIONS:
            js += b',"permissions":"%s"' % format(perms, "04b").encode("ascii")
        jsons.append(js + b',"ttl":%d' % ttl + tail)
    directory = []
    woff, joff = 4, 1
    for w, j in zip(wires, jsons):
        directory.append(_DIRENTRY.pack(woff, len(w), joff, len(j)))
        woff += len(w)
        joff += len(j) + 1
    wire = _INT4.pack(len(wires)) + b"".join(wires)
    js = b"[" + b",".join(jsons) + b"]"
    if len(wire) > _INT4_MAX or len(js) > _INT4_MAX:
        return None
    flags = ALL_PUBLIC if all_public else 0
    return b"".join([_HEADER.pack(LAYOUT_VERSION, flags, len(wires), len(wire), len(js)),
                     *directory, wire, js])  # fmt: skip


# -- one JSONL import line -------------------------------------------------------------------


class _Decline(Exception):
    """Raised inside the line scanner: the line is outside the fast subset."""


_WS = re.compile(rb"[ \t\n\r]*")
#: A run of string text needing no second look: anything but '"', '\\' and C0 controls.
_RUN = re.compile(rb'[^"\\\x00-\x1f]*')
_HEX4 = re.compile(rb"[0-9a-fA-F]{4}")
_NAME = re.compile(rb'"([a-z]*)"[ \t\n\r]*:[ \t\n\r]*')
#: -?(0|[1-9][0-9]{0,9}) not followed by another digit, a fraction or an exponent.
_INT = re.compile(rb"-?(?:0|[1-9][0-9]{0,9})(?![0-9.eE])")
_SHORT_ESCAPES = {ord('"'): '"', ord("\\"): "\\", ord("/"): "/", ord("b"): "\b",
                  ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t"}  # fmt: skip
_LINE_MEMBERS = frozenset((b"handle", b"values"))
_VALUE_MEMBERS = frozenset((b"index", b"type", b"data", b"ttl", b"permissions"))
_DATA_MEMBERS = frozenset((b"format", b"value"))


class _Scanner:
    """A strict scanner of the JSON subset ``encode_jsonl_line`` takes; ``_Decline`` otherwise."""

    def __init__(self, line: bytes) -> None:
        self.line = line
        self.pos = 0

    def ws(self) -> None:
        self.pos = _WS.match(self.line, self.pos).end()

    def peek(self) -> int:
        return self.line[self.pos] if self.pos < len(self.line) else -1

    def expect(self, byte: int) -> None:
        if self.peek() != byte:
            raise _Decline
        self.pos += 1
        self.ws()

    def name(self, allowed, seen) -> bytes:
        # Matched on the raw bytes: a name written with an escape is never one of ours.
        m = _NAME.match(self.line, self.pos)
        if m is None or m.group(1) not in allowed or m.group(1) in seen:
            raise _Decline
        seen.add(m.group(1))
        self.pos = m.end()
        return m.group(1)

    def more(self, close: int) -> bool:
        """After a member or an element: True at a comma, False past ``close``."""
        self.ws()
        c = self.peek()
        if c == 0x2C:
            self.pos += 1
            self.ws()
            return True
        if c != close:
            raise _Decline
        self.pos += 1
        return False

    def string(self) -> str:
        """As orjson decodes it; declines raw controls, invalid UTF-8, unknown escapes and lone
        surrogate escapes."""
        line = self.line
        if self.peek() != 0x22:
            raise _Decline
        p = self.pos + 1
        out = []
        while True:
            q = _RUN.match(line, p).end()
            try:
                out.append(line[p:q].decode("utf-8"))  # strict: as orjson's validation
            except UnicodeDecodeError:
                raise _Decline from None
            if q >= len(line) or line[q] != 0x5C:  # the closing quote, a control or the end
                if q < len(line) and line[q] == 0x22:
                    self.pos = q + 1
                    return "".join(out)
                raise _Decline
            e = line[q + 1] if q + 1 < len(line) else -1
            if e in _SHORT_ESCAPES:
                out.append(_SHORT_ESCAPES[e])
                p = q + 2
                continue
            if e != 0x75 or _HEX4.match(line, q + 2) is None:
                raise _Decline
            cp = int(line[q + 2 : q + 6], 16)
            p = q + 6
            if 0xD800 <= cp <= 0xDBFF:
                if line[p : p + 2] != b"\\u" or _HEX4.match(line, p + 2) is None:
                    raise _Decline
                lo = int(line[p + 2 : p + 6], 16)
                if not 0xDC00 <= lo <= 0xDFFF:
                    raise _Decline
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                p += 6
            elif 0xDC00 <= cp <= 0xDFFF:
                raise _Decline
            out.append(chr(cp))

    def integer(self) -> int:
        # "-0" is orjson's 0 but a spelling not worth the doubt: declined, as in the Cython twin
        m = _INT.match(self.line, self.pos)
        if m is None or m.group() == b"-0":
            raise _Decline
        self.pos = m.end()
        return int(m.group())

    def data(self):
        if self.peek() == 0x22:
            return self.string()
        self.expect(0x7B)
        obj, seen = {}, set()
        while True:
            name = self.name(_DATA_MEMBERS, seen)
            obj[name.decode()] = self.string()
            if not self.more(0x7D):
                return obj

    def value(self) -> dict:
        self.expect(0x7B)
        obj, seen = {}, set()
        while True:
            name = self.name(_VALUE_MEMBERS, seen)
            if name in (b"type", b"permissions"):
                obj[name.decode()] = self.string()
            elif name == b"data":
                obj["data"] = self.data()
            elif name == b"ttl" and self.line.startswith(b"null", self.pos):
                obj["ttl"] = None
                self.pos += 4
            else:  # index, ttl
                obj[name.decode()] = self.integer()
            if not self.more(0x7D):
                return obj

    def line_object(self):
        """→ (handle, values) of the whole line."""
        self.ws()
        self.expect(0x7B)
        handle = values = None
        seen = set()
        while True:
            if self.name(_LINE_MEMBERS, seen) == b"handle":
                handle = self.string()
            else:
                self.expect(0x5B)
                values = []
                while True:
                    if len(values) == MAX_VALUES:
                        raise _Decline
                    values.append(self.value())
                    if not self.more(0x5D):
                        break
            if not self.more(0x7D):
                break
        self.ws()
        if self.pos != len(self.line) or len(seen) != 2:
            raise _Decline
        return handle, values


def encode_jsonl_line(line, now, now_text, reserved_index, case_sensitive):
    """One JSONL import line → ``(key, handle, blob)``, or None (decline).

    ``line`` is the line's bytes; ``now``, ``now_text`` and ``reserved_index`` are
    ``pack_json_values``' arguments.  Returns exactly what this reference gives, or None::

        obj = orjson.loads(line)  # a dict whose members are exactly "handle" and "values"
        handle = obj["handle"]  # a str
        key = normalize_key(handle.encode("utf-8"), case_sensitive)
        blob = pack_json_values(obj["values"], now, now_text, reserved_index)
        return None if key is None or blob is None else (key, handle, blob)

    None — decline: the caller runs ``orjson.loads`` and the general path, which gives the same
    answer or the precise error — for anything outside this strict subset, which needs no
    Python object but the results (the Cython twin scans the bytes once):

    - one JSON object, JSON whitespace (space, tab, LF, CR) around and between tokens, holding
      exactly the members "handle" (a string) and "values" (an array of 1..MAX_VALUES
      objects), in either order;
    - each value object's members as ``pack_json_values`` takes them: "index" and "ttl" JSON
      integers (``-?(0|[1-9][0-9]{0,9})``; no fraction, exponent or "-0"), "ttl" also null,
      "type" and "permissions" strings, "data" a string or exactly an object of the string
      members "format" and "value";
    - no member name twice in any object; every member name written without escapes;
    - strings: UTF-8 that is valid (strictly: no overlong forms, encoded surrogates or code
      points past U+10FFFF), no raw byte below 0x20 (orjson rejects them; raw DEL and C1 are
      text), escapes ``\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX`` (either hex case) with a
      surrogate pair read as one code point and a lone surrogate escape declined.
    """
    if not isinstance(line, bytes):
        raise TypeError(f"encode_jsonl_line() needs bytes, not {type(line).__name__}")
    try:
        handle, values = _Scanner(line).line_object()
    except _Decline:
        return None
    key = normalize_key(handle.encode("utf-8"), case_sensitive)
    if key is None:
        return None
    blob = pack_json_values(values, now, now_text, reserved_index)
    return None if blob is None else (key, handle, blob)


_BLANK = b" \t\r"


def encode_jsonl_lines(parts, now, now_text, reserved_index, case_sensitive, under, max_line):
    """A region of JSON Lines → ``(pairs, taken, other)``: ``encode_jsonl_line`` over many
    lines, without a Python call per line (the Cython twin loops in C).

    ``parts`` is a list of bytes, the lines of a region without their b"\\n"; ``now``,
    ``now_text``, ``reserved_index`` and ``case_sensitive`` are ``encode_jsonl_line``'s;
    ``under`` the bytes every taken key starts with (the import's prefix key + b"/");
    ``max_line`` the longest line taken.  For each ``i`` in order, ``parts[i]`` is:

    - blank (empty, or only b" ", b"\\t", b"\\r" bytes): in no list;
    - taken: ``len(parts[i]) <= max_line`` and ``r = encode_jsonl_line(parts[i], ...)`` is not
      None and ``r[0].startswith(under)``: ``pairs`` gets ``(key, blob)`` = ``(r[0], r[2])``
      and ``taken`` gets ``i`` (aligned: ``pairs[k]`` is line ``taken[k]``'s);
    - otherwise in ``other``: the caller reads that line itself (an error, a comment, a shape
      the fast path declines, a key elsewhere, a line too long).

    ``TypeError`` when ``parts`` is not a list or holds anything but bytes (nothing returned).
    """
    if type(parts) is not list:
        raise TypeError(f"encode_jsonl_lines() needs a list, not {type(parts).__name__}")
    if type(under) is not bytes:
        raise TypeError(f"encode_jsonl_lines() needs bytes under, not {type(under).__name__}")
    pairs, taken, other = [], [], []
    for i, line in enumerate(parts):
        if type(line) is not bytes:
            raise TypeError(f"encode_jsonl_lines() needs bytes lines, not {type(line).__name__}")
        if not line.strip(_BLANK):
            continue
        r = None
        if len(line) <= max_line:
            r = encode_jsonl_line(line, now, now_text, reserved_index, case_sensitive)
        if r is not None and r[0].startswith(under):
            pairs.append((r[0], r[2]))
            taken.append(i)
        else:
            other.append(i)
    return pairs, taken, other


# -- one CSV import record -------------------------------------------------------------------


def encode_csv_row(row, handle_at, columns, now, now_text, reserved_index, case_sensitive):
    """One CSV record (a list of str, as the csv module reads it) → ``(key, blob)``, or None.

    ``handle_at`` is the identifier's column; ``columns`` a tuple of ``(position, index, type,
    ttl)`` for every value column (``ttl`` an int or None: the default); ``now``, ``now_text``,
    ``reserved_index`` and ``case_sensitive`` are ``encode_jsonl_line``'s.  Returns exactly
    what this reference gives, or None (decline: the caller takes its general path)::

        handle = row[handle_at]  # a non-empty str
        values = []
        for pos, index, vtype, ttl in columns:
            cell = row[pos]
            if cell:  # an empty cell is no value (and its column goes unchecked)
                v = {"index": index, "type": vtype, "data": cell}
                if ttl is not None:
                    v["ttl"] = ttl
                values.append(v)
        key = normalize_key(handle.encode("utf-8"), case_sensitive)
        blob = pack_json_values(values, now, now_text, reserved_index)
        return None if key is None or blob is None else (key, blob)

    Declined besides, never raised: ``row`` not a list, ``columns`` not a tuple of 4-tuples,
    a position (``handle_at`` or a column's) not an int in ``0..len(row)-1`` (no negative
    positions), the handle or any cell read not a str, a str with a lone surrogate; and all
    ``pack_json_values`` declines (no non-empty cell, a structured type, the reserved index,
    duplicate indexes, ...).
    """
    if type(row) is not list or type(columns) is not tuple:
        return None
    n = len(row)
    if type(handle_at) is not int or not 0 <= handle_at < n:
        return None
    handle = row[handle_at]
    if type(handle) is not str or not handle:
        return None
    values = []
    for column in columns:
        if type(column) is not tuple or len(column) != 4:
            return None
        pos, index, vtype, ttl = column
        if type(pos) is not int or not 0 <= pos < n or type(row[pos]) is not str:
            return None
        cell = row[pos]
        if cell:
            v = {"index": index, "type": vtype, "data": cell}
            if ttl is not None:
                v["ttl"] = ttl
            values.append(v)
    try:
        raw = handle.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return None
    key = normalize_key(raw, case_sensitive)
    if key is None:
        return None
    blob = pack_json_values(values, now, now_text, reserved_index)
    return None if blob is None else (key, blob)


# -- CSV import lines --------------------------------------------------------------------------

# Every '"' of the line in an RFC 4180 quoted cell: a cell that starts with '"', holds '""' for
# each quote in it and ends with '"' at a comma, a CR or the line's end.  (The csv module also
# reads a '"' inside an unquoted cell, as text; encode_csv_lines leaves such lines to the caller.)
_QUOTES_IN_QUOTED_CELLS = re.compile(
    r'(?:"(?:[^"]|"")*"|[^",\r]*)(?:,(?:"(?:[^"]|"")*"|[^",\r]*))*\r*')


def _csv_line(line, width, handle_at, columns, now, now_text, reserved_index, case_sensitive):
    """One physical line → ``(key, blob)`` or None, as ``encode_csv_lines`` defines it."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if '"' in text and _QUOTES_IN_QUOTED_CELLS.fullmatch(text) is None:
        return None
    try:
        rows = list(csv.reader(io.StringIO(text + "\n", newline="\n"), strict=True))
    except csv.Error:
        return None
    if len(rows) != 1 or len(rows[0]) != width or not width:
        return None
    row = rows[0]
    first = row[0][:1]
    if first == "#" or (first and first <= " " and row[0].lstrip()[:1] == "#"):
        return None  # a comment (registry.import_lines)
    if not any(row):
        return None
    return encode_csv_row(row, handle_at, columns, now, now_text, reserved_index, case_sensitive)


def encode_csv_lines(parts, width, handle_at, columns, now, now_text, reserved_index,
                     case_sensitive, under, max_line):
    """A region of a CSV import body → ``(pairs, taken, other)``: the CSV twin of
    ``encode_jsonl_lines``, each physical line read as one record without the csv module's
    per-row Python objects (the Cython twin cuts the cells in C).

    ``parts`` is a list of bytes, physical lines without their b"\\n", all after the header and
    with no record open before the first (the caller's to know: a line with an odd number of
    '"' — never taken — may open a record that the lines after it continue); ``width`` the
    header's number of cells; ``handle_at``, ``columns``, ``now``, ``now_text``,
    ``reserved_index`` and ``case_sensitive`` are ``encode_csv_row``'s; ``under`` and
    ``max_line`` are ``encode_jsonl_lines``'.  For each ``i`` in order, ``parts[i]`` is:

    - blank (empty: b""): in no list;
    - taken: ``len(parts[i]) <= max_line``, ``r = line(parts[i])`` (below) is not None and
      ``r[0].startswith(under)``: ``pairs`` gets ``r`` and ``taken`` gets ``i`` (aligned);
    - otherwise in ``other``, for the caller to read with the csv module (a comment, a wrong
      number of cells, a quoted cell going on to the next line, a CSV error, a decline).

    ``line(b)`` is exactly this reference, the caller's reading of a record on one line::

        text = b.decode("utf-8")  # strict; an error: None
        # None unless every '"' is in a quoted cell (RFC 4180; see below)
        rows = list(csv.reader(io.StringIO(text + "\\n", newline="\\n"), strict=True))
        # csv.Error: None; else exactly one row of exactly width >= 1 cells
        row = rows[0]
        first = row[0][:1]  # a comment: None
        if first == "#" or (first and first <= " " and row[0].lstrip()[:1] == "#"): ...
        # every cell empty: None
        return encode_csv_row(row, handle_at, columns, now, now_text, reserved_index,
                              case_sensitive)

    The quoting rule: a line with a '"' inside an unquoted cell (``ab"c``, `` "x"``), which
    the csv module reads as text, is left to the caller.  So a taken line holds only cells
    that are either unquoted (no '"', no CR) or quoted: '"', any text with each '"' doubled
    (CR included), '"', then a comma or the end of the record.  The csv module's own rules
    complete the picture: a CR outside a quoted cell ends the record and only more CRs may
    follow it (so CRLF lines, "a,b\\r", are taken; "a\\rb" is an error; a line starting with
    a CR is no record), NUL is text, a cell holds at most ``csv.field_size_limit()``
    characters.  (A b"\\n", which ``parts`` should not hold, is text in a quoted cell and
    ends the record elsewhere: more than one row, so the line is the caller's.)

    ``TypeError`` when ``parts`` is not a list or holds anything but bytes, when ``under`` is
    not bytes or ``width`` not an int.  Other odd arguments (``columns``, ``handle_at``,
    ``now``) leave every line to the caller, as ``encode_csv_row`` declines them.
    """
    if type(parts) is not list:
        raise TypeError(f"encode_csv_lines() needs a list, not {type(parts).__name__}")
    if type(under) is not bytes:
        raise TypeError(f"encode_csv_lines() needs bytes under, not {type(under).__name__}")
    if type(width) is not int:
        raise TypeError(f"encode_csv_lines() needs an int width, not {type(width).__name__}")
    pairs, taken, other = [], [], []
    for i, line in enumerate(parts):
        if type(line) is not bytes:
            raise TypeError(f"encode_csv_lines() needs bytes lines, not {type(line).__name__}")
        if not line:
            continue
        r = None
        if len(line) <= max_line:
            r = _csv_line(line, width, handle_at, columns, now, now_text, reserved_index,
                          case_sensitive)  # fmt: skip
        if r is not None and r[0].startswith(under):
            pairs.append(r)
            taken.append(i)
        else:
            other.append(i)
    return pairs, taken, other


# -- DNS fast path (issue 6 §4) ---------------------------------------------------------------
# The general path is resolver.protocols.dns.responder.respond (dnspython); this answers the
# common query exactly as it does, or declines.  Message layouts: RFC 1035 §4.1, OPT RFC 6891
# §6.1.2; record data: resolver.protocols.dns.answers.

_DNS_HEADER = struct.Struct(">HHHHHH")
_DNS_RR = struct.Struct(">HHHIH")  # owner pointer, type, class, ttl, rdlength
_DNS_U16X2 = struct.Struct(">HH")
# root owner, type 41, UDP payload, extended RCODE, version, flags (DO = 0x80 of the first), RDLEN
_DNS_OPT = struct.Struct(">BHHBBBBH")
_LDH = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_ALNUM = _LDH - {ord("-")}
_APEX_CHARS = _LDH | {ord("_")}
_URI_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*:")
# RFC 3986 §2: unreserved / reserved / pct-encoded (answers._URI_CHARS, over bytes)
_URI_REST = re.compile(rb"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_NAPTR_HEAD = b"\x01U\x03URL"  # flags "U", services "URL"


class DnsZone:
    """What the DNS fast path needs of the zone: ``DnsZone(apex_wire, case_sensitive=False,
    max_udp=1232)``.  ``apex_wire``: the apex in DNS wire form (``b"\\x02id\\x06idnode\\x04test
    \\x00"``; ``b"\\x00"`` = the root), labels of 1–63 letters, digits, '-' and '_' (the
    mapping's apex rule), at most ``DNS_MAX_APEX`` bytes; kept lower-cased.  ``max_udp``: the
    responder's UDP payload limit, ``DNS_MIN_UDP``..``DNS_MAX_TCP``.  ``ValueError`` otherwise."""

    __slots__ = ("apex_wire", "case_sensitive", "max_udp")

    def __init__(self, apex_wire, case_sensitive=False, max_udp=1232) -> None:
        if not isinstance(apex_wire, bytes):
            raise TypeError("apex_wire must be bytes")
        if type(max_udp) is not int or not DNS_MIN_UDP <= max_udp <= DNS_MAX_TCP:
            raise ValueError(f"max_udp must be an int {DNS_MIN_UDP}..{DNS_MAX_TCP}")
        if not _apex_ok(apex_wire):
            raise ValueError("apex_wire: a wire-form name of labels 1-63 of [A-Za-z0-9_-]")
        self.apex_wire = apex_wire.lower()
        self.case_sensitive = bool(case_sensitive)
        self.max_udp = max_udp


def _apex_ok(a: bytes) -> bool:
    p, n = 0, len(a)
    if not 0 < n <= DNS_MAX_APEX:
        return False
    while p < n:
        length = a[p]
        if length == 0:
            return p == n - 1
        if length > 63 or p + 1 + length >= n:
            return False
        if not all(c in _APEX_CHARS for c in a[p + 1 : p + 1 + length]):
            return False
        p += 1 + length
    return False


def _plain_label(label: bytes) -> bool:
    """A "plain" mapping label (mapping._plain, read case-insensitively)."""
    return (
        label[0] in _ALNUM
        and label[-1] in _ALNUM
        and all(c in _LDH for c in label)
        and label[2:4] != b"--"
    )



def _field(blob: bytes, p: int, end: int) -> tuple[bytes | None, int]:
    """The u32-length-prefixed field at ``p`` (RFC 3652 §2.2) and the offset past it; (None, p)
    when it overruns ``end``."""
    if p + 4 > end:
        return None, p
    n = _i32(blob, p)
    if n < 0 or p + 4 + n > end:
        return None, p
    return blob[p + 4 : p + 4 + n], p + 4 + n

def _dns_values(blob: bytes):
    """The values of a stored record, ``(index, ttl_type, ttl, perms, type, data)`` each in
    record order, or None wherever ``resolver.record.unpack`` would raise (a corrupt record is
    the general path's: it answers SERVFAIL)."""
    size = len(blob)
    if size < HEADER_SIZE or blob[0] != LAYOUT_VERSION:
        return None
    n = _I(blob[2:4], "big")
    wlen = _I(blob[4:8], "big")
    jlen = _I(blob[8:12], "big")
    wstart = HEADER_SIZE + DIR_SIZE * n
    if wstart + wlen + jlen != size or wlen < 4 or _i32(blob, wstart) != n:
        return None
    out = []
    for i in range(n):
        d = HEADER_SIZE + DIR_SIZE * i
        wo = _I(blob[d : d + 4], "big")
        wl = _I(blob[d + 4 : d + 8], "big")
        jo = _I(blob[d + 8 : d + 12], "big")
        jl = _I(blob[d + 12 : d + 16], "big")
        if wo + wl > wlen or jo + jl > jlen or wl < VALUE_MIN:
            return None
        v = wstart + wo
        end = v + wl
        vtype, p = _field(blob, v + VALUE_TYPE, end)
        data, p = _field(blob, p, end)
        if vtype is None or data is None or p + 4 > end:
            return None
        refs = _i32(blob, p)
        p += 4
        if not 0 <= refs <= MAX_VALUES:
            return None
        for _ in range(refs):
            if p + 4 > end:
                return None
            hl = _i32(blob, p)
            if hl < 0 or p + 4 + hl + 4 > end or not _utf8(blob[p + 4 : p + 4 + hl]):
                return None
            p += 4 + hl + 4
        if p != end or not _utf8(vtype):
            return None
        out.append((_i32(blob, v), blob[v + 8], _i32(blob, v + 9), blob[v + VALUE_PERMS],
                    vtype, data))  # fmt: skip
    return out


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _b64(b: bytes) -> bytes:
    return base64.b64encode(b)


def _txt_rdata(index: int, vtype: bytes, data: bytes) -> bytes:
    """answers._txt_rdata: ``type=…;index=…;data=…`` cut into ≤ 255-byte strings."""
    if b";" in vtype or _CONTROL.search(vtype) is not None:
        tfield = b"type.b64=" + _b64(vtype)
    else:
        tfield = b"type=" + vtype
    if _utf8(data) and _CONTROL.search(data) is None:
        dfield = b"data=" + data
    else:
        dfield = b"data.b64=" + _b64(data)
    text = b"%s;index=%d;%s" % (tfield, index, dfield)
    out = bytearray()
    pos, n = 0, len(text)
    while True:
        end = min(pos + 255, n)
        while end < n and text[end] & 0xC0 == 0x80:  # never cut inside a UTF-8 sequence
            end -= 1
        out.append(end - pos)
        out += text[pos:end]
        pos = end
        if pos >= n:
            return bytes(out)


def _uri_bytes(data: bytes) -> bytes | None:
    """answers._uri_of: the data as an absolute URI (non-ASCII percent-encoded), or None."""
    if not _utf8(data) or _CONTROL.search(data) is not None:
        return None
    uri = _NON_ASCII.sub(lambda m: b"%%%02X" % m.group()[0], data)
    m = _URI_SCHEME.match(uri)
    if m is None or m.end() == len(uri) or not _URI_REST.fullmatch(uri, m.end()):
        return None
    return uri


def _dns_rrs(values, qtype: int, now: int):
    """answers.rrsets_for(values, qtype) as ``(ttl, [rdata, …])``; None where the fast path
    declines: no RR, or two TXT RRs of one value index."""
    pairs = []  # (value's index, ttl type, ttl, rdata)
    for index, ttl_type, ttl, perms, vtype, data in values:
        if not perms & PERM_PUBLIC_READ:
            continue
        if qtype == DNS_TXT:
            pairs.append((index, ttl_type, ttl, _txt_rdata(index, vtype, data)))
            continue
        if len(vtype) != 3 or vtype.upper() != b"URL":
            continue
        uri = _uri_bytes(data)
        if uri is None:
            continue
        if qtype == DNS_URI:
            priority = min(1 + len(pairs), 0xFFFF)
            pairs.append((index, ttl_type, ttl, _DNS_U16X2.pack(priority, 1) + uri))
            continue
        regexp = b"!^.*$!" + uri.replace(b"\\", b"\\\\").replace(b"!", b"\\!") + b"!"
        if len(regexp) <= 255:
            order = min(NAPTR_ORDER_BASE + len(pairs), 0xFFFF)
            pairs.append((index, ttl_type, ttl, b"".join((
                _DNS_U16X2.pack(order, NAPTR_PREFERENCE), _NAPTR_HEAD,
                bytes((len(regexp),)), regexp, b"\x00"))))  # fmt: skip
    pairs = [pair for pair in pairs if len(pair[3]) <= DNS_MAX_RDATA]
    if not pairs:
        return None
    # Two TXT values of one index could give equal RDATA, which dnspython's RRset would keep
    # once: declined (URI priorities and NAPTR orders differ anyway).
    if qtype == DNS_TXT and len({index for index, *_ in pairs}) != len(pairs):
        return None
    ttl = min(
        min(max(ttl - now if ttl_type == TTL_ABSOLUTE else ttl, 0), DNS_MAX_TTL)
        for _, ttl_type, ttl, _ in pairs
    )  # fmt: skip
    return ttl, [rd for *_, rd in pairs]


def dns_answer(query, txn, records_db, prefixes_db, zone, now, tcp=False, held=None,
               cache=None, tally=None):  # fmt: skip
    """Answer the common DNS query from the store exactly as the general path does, or None.

    ``query``: one DNS message (bytes); ``zone``: a ``DnsZone``; ``now``: the UNIX time the TTLs
    of absolute-TTL values count from; ``tcp``: the response goes over TCP (limit 65535, not the
    UDP payload); ``held``, ``cache``: as for ``_lookup`` (a ``[prefix or None]`` list reused
    through one transaction, a ``RecordCache`` synced to ``txn``) — the answer is the same
    without them.  ``OverflowError`` for ``now`` outside ±2⁶², ``TypeError`` for a ``tally``
    neither None nor a dict; nothing else raises but the store.

    Not None exactly when the general path answers from a stored record — and then the bytes
    are ``responder.respond(query, Zone(apex, case_sensitive), lookup, now=now,
    max_udp=zone.max_udp, tcp=tcp)`` for the store's ``lookup``.  Taken here, all else declined:

    * header: QR=0, OPCODE QUERY, TC=0 (other flags free), QDCOUNT=1, ANCOUNT=NSCOUNT=0,
      ARCOUNT 0 or 1; the message ends right after the question, or after one OPT RR of root
      owner, version 0 and RDLENGTH 0 (any payload, extended RCODE and flags);
    * the question: QCLASS IN, QTYPE TXT, URI or NAPTR; an uncompressed QNAME ≤ 255 bytes whose
      last labels are the apex (ASCII-case-insensitively) and which has at least two labels
      above it, each a "plain" mapping label ([A-Za-z0-9], '-' inside, no "--" at positions
      3–4), the prefix not 0.NA.  The identifier is then ``P/S``: P the labels after the first,
      reversed, upper-cased, joined with '.', S the first label upper-cased (lower-cased when
      ``zone.case_sensitive``) — ``mapping.from_dns_name`` of such a name;
    * the prefix is held and the record exists and decodes as ``resolver.record.unpack``
      decodes it, and ``answers.rrsets_for`` gives at least one RR (no two alike).

    The response: header (the query's id; QR, AA, the query's RD and CD; ANCOUNT; ARCOUNT 1
    with an OPT), the question byte for byte, one RR per record datum (owner: a pointer to the
    question's name, 0xC00C; class IN; the RRset's one TTL), then the OPT (root, payload
    ``zone.max_udp``, the query's DO bit, no options) if the query had one.  Over the size
    limit (TCP 65535; UDP with OPT max(512, min(payload, max_udp)); UDP 512) the response is
    header (TC and AA set, ANCOUNT 0) + question + OPT, as the general path makes it.

    ``tally``: counts each response returned, as ``handle_resolve`` defines — always
    ``TALLY_OK`` (only existing records with RRs are answered here; the TC form too: the record
    was found), under the prefix of the identifier ``P/S`` (``P``, upper-cased).
    """
    _check_tally(tally)
    q = query if type(query) is bytes else bytes(query)
    now = operator.index(now)
    if not -DNS_NOW_LIMIT <= now <= DNS_NOW_LIMIT:
        raise OverflowError("now out of range")
    n = len(q)
    if n < 17:  # header + the shortest question
        return None
    qid, flags, qd, an, ns, ar = _DNS_HEADER.unpack_from(q)
    if flags & 0xFA00 or qd != 1 or an or ns or ar > 1:  # QR, OPCODE, TC
        return None
    starts = []
    p = 12
    while p < n:
        length = q[p]
        if length == 0:
            break
        if length > 63:
            return None
        starts.append(p)
        p += 1 + length
    else:
        return None
    name_end = p + 1
    end = name_end + 4
    if name_end - 12 > DNS_MAX_NAME or end > n:
        return None
    qtype, qclass = _DNS_U16X2.unpack_from(q, name_end)
    if qclass != 1 or qtype not in (DNS_TXT, DNS_URI, DNS_NAPTR):
        return None
    if ar:
        opt = q[end:]
        if len(opt) != 11 or opt[:3] != b"\x00\x00\x29" or opt[6] != 0 or opt[9:] != b"\0\0":
            return None
        limit = max(DNS_MIN_UDP, min(_I(opt[3:5], "big"), zone.max_udp))
    elif n != end:
        return None
    else:
        limit = DNS_MIN_UDP
    if tcp:
        limit = DNS_MAX_TCP
    apex = zone.apex_wire
    t = name_end - len(apex)
    if t < 12 or (t not in starts and t != p) or q[t:name_end].lower() != apex:
        return None
    labels = [q[s + 1 : s + 1 + q[s]] for s in starts if s < t]
    if len(labels) < 2 or not all(_plain_label(label) for label in labels):
        return None
    prefix = b".".join(reversed(labels[1:])).upper()
    if prefix == NA_PREFIX:
        return None
    suffix = labels[0].lower() if zone.case_sensitive else labels[0].upper()
    blob = _lookup(prefix + b"/" + suffix, txn, records_db, prefixes_db, cache)
    if blob is None or blob is _MISS:
        return None  # not held / no such identifier: REFUSED or NXDOMAIN, the general path's
    values = _dns_values(bytes(blob))
    if values is None:
        return None
    rrs = _dns_rrs(values, qtype, now)
    if rrs is None:
        return None
    ttl, rdatas = rrs
    question = q[12:end]
    opt = _DNS_OPT.pack(0, 41, zone.max_udp, 0, 0, q[n - 4] & 0x80, 0, 0) if ar else b""
    flags = 0x8400 | (flags & 0x0110)  # QR, AA; RD and CD echoed
    size = 12 + len(question) + sum(12 + len(rd) for rd in rdatas) + len(opt)
    if tally is not None:
        k = (prefix, TALLY_OK)
        tally[k] = tally.get(k, 0) + 1
    if size > limit:
        return _DNS_HEADER.pack(qid, flags | 0x0200, 1, 0, 0, ar) + question + opt
    parts = [_DNS_HEADER.pack(qid, flags, 1, len(rdatas), 0, ar), question]
    for rd in rdatas:
        parts.append(_DNS_RR.pack(0xC00C, qtype, 1, ttl, len(rd)))
        parts.append(rd)
    parts.append(opt)
    return b"".join(parts)


# -- UDP datagram pump -----------------------------------------------------------------------

BATCH = PUMP_BATCH


class UdpPump:
    """Answers a burst of datagrams waiting on a non-blocking UDP socket.

    ``UdpPump(sock, cache=None, dns=None, hand_back=False, tally=None)`` keeps the socket
    (and, in the Cython twin, receive buffers for ``BATCH`` datagrams of up to ``MAX_DATAGRAM``
    bytes), an optional ``RecordCache``, the protocol — Handle, or DNS when ``dns`` is a
    ``DnsZone`` — and an optional ``tally`` (below).
    ``run(env, records_db, prefixes_db, case_sensitive)`` reads at most ``BATCH`` datagrams
    without blocking, then begins one read transaction of the py-lmdb environment ``env`` —
    after the burst arrived, so every answer sees each write committed before its request was
    sent — syncs the cache to it, and answers each datagram:

    * Handle: sends each reply ``handle_resolve`` gives that fits one packet (≤ ``UDP_PACKET``
      bytes) to its sender;
    * DNS: sends each reply ``dns_answer`` gives (``now`` = the current UNIX time, ``tcp``
      False; such a reply already fits the UDP limit; ``case_sensitive`` is the zone's).

    It returns ``(read, rest)``: how many datagrams were read (0: none was waiting) and, in
    arrival order, ``(datagram, address, reply)`` for every datagram the caller must finish —
    reply None: the general path answers it; reply bytes (Handle only): a reply too long for
    one packet, to be split.  ``hand_back=True`` sends nothing: every datagram comes back in
    ``rest`` with its reply or None (the caller rate-limits, then sends).
    Every read datagram is either answered here or returned, except one whose sender is not an
    IP address (nothing to answer).  A reply the socket will not take now (full send buffer) is
    dropped, as UDP may, and counted in ``dropped``.  An error reading the socket before any
    datagram was read raises ``OSError``.  The Cython twin moves the burst with one
    ``recvmmsg`` and one ``sendmmsg`` where the system has them.

    ``tally``: None or a dict, as ``handle_resolve`` defines (``TypeError`` otherwise, at
    construction or when set); a public attribute, settable between runs like ``cache``.  Each
    ``run`` counts into the dict it holds when the run starts, as if passing it to the answer
    function of every datagram of the burst: each reply that function gives is counted once,
    wherever it then goes — sent, handed back in ``rest`` for splitting (Handle, too long for
    one packet) or with ``hand_back``; a datagram declined (reply None) or whose answer
    function raised counts nothing.  The counts are in the dict when ``run`` returns (the
    Cython twin adds them once per burst, not per datagram).
    """

    def __init__(self, sock, cache=None, dns=None, hand_back=False, tally=None) -> None:
        if dns is not None and not isinstance(dns, DnsZone):
            raise TypeError("dns must be a DnsZone")
        self.sock = sock
        self.cache = cache
        self.dns = dns
        self.hand_back = bool(hand_back)
        self.tally = tally
        self.dropped = 0

    @property
    def tally(self):
        return self._tally

    @tally.setter
    def tally(self, tally) -> None:
        _check_tally(tally)
        self._tally = tally

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
        zone, hand_back, held, tally = self.dns, self.hand_back, [None], self._tally
        now = int(time.time())
        txn = env.begin()  # after the burst arrived: it sees every write made before it was sent
        try:
            if self.cache is not None:
                self.cache.sync(txn)
            for data, addr in burst:
                try:
                    if zone is not None:
                        out = dns_answer(data, txn, records_db, prefixes_db, zone, now, False,
                                         held, self.cache, tally)  # fmt: skip
                        fits = out is not None
                    else:
                        out = handle_resolve(data, txn, records_db, prefixes_db, case_sensitive,
                                             self.cache, tally)  # fmt: skip
                        fits = out is not None and len(out) <= UDP_PACKET
                except Exception:
                    out, fits = None, False  # the general path answers it, and reports the failure
                if fits and not hand_back:
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
