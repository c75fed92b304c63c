# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython twin of ``native._hotpath_py``: same names, signatures and output bytes.

The contracts are documented once, in ``_hotpath_py``; this file only makes them fast.
Imports nothing of ours but the shared constants (restated as C constants below and checked
against ``native.constants`` by tests/parity).

Both resolvers share the store lookup (``_lookup``) and the value selection (``_layout`` +
``_pick``), which works on C pointers: the filters are always in the wire form of a
resolution request's lists (int4 indexes, then int4-length-prefixed types), read in place from
a Handle request and built once per call from an HTTP query's tuples.
"""

import collections
import csv
import hashlib

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.ref cimport Py_INCREF, Py_XDECREF, PyObject
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memchr, memcmp, memcpy, memmove
from libc.time cimport time

cdef enum:
    MAX_HANDLE = 2048
    MAX_PREFIX = 255
    LAYOUT_VERSION = 1
    ALL_PUBLIC = 0x01
    HEADER_SIZE = 12
    DIR_SIZE = 16
    PERM_PUBLIC_READ = 0x02
    VALUE_PERMS = 13
    VALUE_TYPE = 14
    VALUE_MIN = 26
    # Handle protocol
    PROTOCOL_MAJOR = 2
    PROTOCOL_MINOR = 11
    FLAG_REQUEST_DIGEST = 0x00800000
    FLAG_PUBLIC_ONLY = 0x01000000
    FLAGS_NOT_FAST = 0x60000000

cdef enum:
    # Offsets in a Handle message (resolver/protocols/handle/message.py), from its first byte.
    ENV = 20  # envelope
    HDR_END = 44  # envelope + header: the body starts here
    MAX_MESSAGE = 262144
    MIN_REQUEST = 60  # + handle length, two empty counts and the credential length
    RC_SUCCESS = 1
    RC_NOT_FOUND = 100
    RC_VALUES_NOT_FOUND = 200
    UDP_PACKET = 512  # longest single-packet UDP reply
    # Selections of up to this many values need no heap allocation.
    STACK_SPANS = 64

#: The compiled values of the constants above, for tests/parity to hold against
#: ``native.constants`` and ``resolver.protocols.handle.constants``.
_CONSTANTS = {
    "MAX_HANDLE": MAX_HANDLE, "MAX_PREFIX": MAX_PREFIX, "LAYOUT_VERSION": LAYOUT_VERSION,
    "ALL_PUBLIC": ALL_PUBLIC, "HEADER_SIZE": HEADER_SIZE, "DIR_SIZE": DIR_SIZE,
    "PERM_PUBLIC_READ": PERM_PUBLIC_READ, "VALUE_PERMS": VALUE_PERMS, "VALUE_TYPE": VALUE_TYPE,
    "VALUE_MIN": VALUE_MIN, "PROTOCOL_MAJOR": PROTOCOL_MAJOR, "PROTOCOL_MINOR": PROTOCOL_MINOR,
    "FLAG_REQUEST_DIGEST": FLAG_REQUEST_DIGEST, "FLAGS_NOT_FAST": FLAGS_NOT_FAST,
    "FLAG_PUBLIC_ONLY": FLAG_PUBLIC_ONLY,
    "MAX_MESSAGE": MAX_MESSAGE, "ENV": ENV, "HDR_END": HDR_END, "UDP_PACKET": UDP_PACKET,
    "PUMP_BATCH": IDN_BATCH, "MAX_DATAGRAM": IDN_DGRAM, "CHANGE_HEADER": CHANGE_HEADER,
    "CHANGE_KEY_LENGTH": CHANGE_KEY_LENGTH,
    "ACTION_HOME_PREFIX": ACTION_HOME_PREFIX, "ACTION_UNHOME_PREFIX": ACTION_UNHOME_PREFIX,
    "ENTRY_OVERHEAD": ENTRY_OVERHEAD, "RESYNC_LIMIT": RESYNC_LIMIT,
}

cdef bytes HEAD_OK = b'{"responseCode":1,"handle":"'
cdef bytes MID_OK = b'","values":'
cdef bytes HEAD_100 = b'{"responseCode":100,"handle":"'
cdef bytes HEAD_200 = b'{"responseCode":200,"values":[],"handle":"'
cdef bytes TAIL_ERR = b'"}'

cdef object _md5 = hashlib.md5
cdef object _sha1 = hashlib.sha1
cdef object _sha256 = hashlib.sha256

#: An authoritative miss: the prefix is held, the identifier is not.
cdef object _MISS = object()


cdef inline unsigned int _u32(const unsigned char* p) noexcept nogil:
    return ((<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16)
            | (<unsigned int>p[2] << 8) | p[3])


cdef inline void _put32(unsigned char* p, unsigned int x) noexcept nogil:
    p[0] = <unsigned char>(x >> 24)
    p[1] = <unsigned char>(x >> 16)
    p[2] = <unsigned char>(x >> 8)
    p[3] = <unsigned char>x


cdef inline unsigned char _up(unsigned char c) noexcept nogil:
    if c >= 97 and c <= 122:
        return c - 32
    return c


cdef inline int _utf8_seq(const unsigned char* p) noexcept nogil:
    """Length of the UTF-8 sequence at ``p`` (a byte >= 0x80), 0 if it is not strict UTF-8
    as Python's codec and orjson read it (overlong, surrogate, > U+10FFFF, truncated).  Reads
    a continuation byte only after the previous one was one: a NUL (CPython's terminator of a
    bytes object) stops it."""
    cdef unsigned char c = p[0], c1 = p[1]
    cdef int need
    if c < 0xC2:
        return 0
    elif c < 0xE0:
        need = 1
    elif c < 0xF0:
        need = 2
    elif c < 0xF5:
        need = 3
    else:
        return 0
    if (c1 & 0xC0) != 0x80:
        return 0
    if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 >= 0xA0):
        return 0
    if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 >= 0x90):
        return 0
    if need >= 2 and (p[2] & 0xC0) != 0x80:
        return 0
    if need == 3 and (p[3] & 0xC0) != 0x80:
        return 0
    return need + 1


cdef inline int _utf8_ok(const unsigned char* s, Py_ssize_t n, bint* control) noexcept nogil:
    """Strict UTF-8 as Python's codec reads it; ``control``: a C0, DEL or C1 character."""
    cdef Py_ssize_t i = 0
    cdef unsigned char c
    cdef unsigned char tail[4]
    cdef int k
    control[0] = False
    while i < n:
        c = s[i]
        if c < 0x80:
            if c < 0x20 or c == 0x7F:
                control[0] = True
            i += 1
            continue
        if n - i >= 4:
            k = _utf8_seq(s + i)
        else:
            tail[0] = tail[1] = tail[2] = tail[3] = 0
            memcpy(tail, s + i, n - i)
            k = _utf8_seq(tail)
        if k == 0:
            return 0
        if c == 0xC2 and s[i + 1] < 0xA0:
            control[0] = True
        i += k
    return 1


cdef int _valid_utf8_no_controls(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Strict UTF-8 (as Python's codec: no overlongs, surrogates or > U+10FFFF), no C0/DEL/C1.
    ``s`` need not be terminated: a sequence in the last 3 bytes is read from a zero-padded
    copy, so nothing past ``n`` is read and a truncated one fails."""
    cdef bint control
    return _utf8_ok(s, n, &control) and not control


cdef int _prefix_ok(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if n <= 0 or n > MAX_PREFIX or p[0] == 46 or p[n - 1] == 46:
        return 0
    for i in range(1, n):
        if p[i] == 46 and p[i - 1] == 46:
            return 0
    return 1


cdef object _normalize(const unsigned char* s, Py_ssize_t n, bint case_sensitive):
    # Takes a pointer so that handle_resolve needs no bytes object for the request's handle.
    cdef Py_ssize_t slash = -1, i
    cdef bytes out
    cdef unsigned char* o
    cdef bint fold_suffix
    if n == 0 or n > MAX_HANDLE:
        return None
    if not _valid_utf8_no_controls(s, n):
        return None
    for i in range(n):
        if s[i] == 47:
            slash = i
            break
    if slash < 0:
        if not _prefix_ok(s, n):
            return None
        out = PyBytes_FromStringAndSize(NULL, n + 5)
        o = <unsigned char*>PyBytes_AS_STRING(out)
        memcpy(o, b"0.NA/", 5)
        for i in range(n):
            o[5 + i] = _up(s[i])
        return out
    if slash == n - 1 or not _prefix_ok(s, slash):
        return None
    out = PyBytes_FromStringAndSize(NULL, n)
    o = <unsigned char*>PyBytes_AS_STRING(out)
    for i in range(slash + 1):
        o[i] = _up(s[i])
    fold_suffix = not case_sensitive or (slash == 4 and memcmp(o, b"0.NA", 4) == 0)
    if fold_suffix:
        for i in range(slash + 1, n):
            o[i] = _up(s[i])
    else:
        memcpy(o + slash + 1, s + slash + 1, n - slash - 1)
    return out


cpdef object normalize_key(bytes handle, bint case_sensitive=False):
    if handle is None:
        raise TypeError("normalize_key() needs bytes, not None")
    return _normalize(<const unsigned char*>PyBytes_AS_STRING(handle), PyBytes_GET_SIZE(handle),
                      case_sensitive)


cpdef bytes json_escape(bytes handle):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(handle), i, extra = 0, j = 0
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(handle)
    cdef bytes out
    cdef unsigned char* o
    for i in range(n):
        if s[i] == 34 or s[i] == 92:
            extra += 1
    if extra == 0:
        return handle
    out = PyBytes_FromStringAndSize(NULL, n + extra)
    o = <unsigned char*>PyBytes_AS_STRING(out)
    for i in range(n):
        if s[i] == 34 or s[i] == 92:
            o[j] = 92
            j += 1
        o[j] = s[i]
        j += 1
    return out


# -- record cache (contract: _hotpath_py.RecordCache) -----------------------------------------

cdef enum:
    CHANGE_HEADER = 13
    CHANGE_KEY_LENGTH = 11
    ACTION_HOME_PREFIX = 4
    ACTION_UNHOME_PREFIX = 5
    ENTRY_OVERHEAD = 160
    RESYNC_LIMIT = 4096


cdef class RecordCache:
    cdef object _entries  # OrderedDict: key → record, oldest first
    cdef public Py_ssize_t budget, size
    cdef public object changes_db
    cdef public long long txn_id, last_change

    def __init__(self, budget, changes_db):
        self.budget = max(0, int(budget))
        self.changes_db = changes_db
        self.size = 0
        self.txn_id = -1
        self.last_change = 0
        self._entries = collections.OrderedDict()

    def __len__(self):
        return len(self._entries)

    def clear(self):
        self._entries.clear()
        self.size = 0

    cdef inline object _get(self, bytes key):
        cdef PyObject* p = PyDict_GetItem(self._entries, key)  # borrowed; OrderedDict is a dict
        return None if p == NULL else <object>p

    cdef void _put(self, bytes key, bytes blob) except *:
        cdef Py_ssize_t cost = PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(blob) + ENTRY_OVERHEAD
        if cost > self.budget or PyDict_GetItem(self._entries, key) != NULL:
            return
        self._entries[key] = blob  # through OrderedDict.__setitem__: keeps its order
        self.size += cost
        while self.size > self.budget:
            k, b = self._entries.popitem(False)
            self.size -= PyBytes_GET_SIZE(k) + PyBytes_GET_SIZE(b) + ENTRY_OVERHEAD

    def get(self, bytes key):
        return self._get(key)

    def put(self, bytes key, bytes blob):
        self._put(key, blob)

    cdef void _forget(self, bytes key) except *:
        blob = self._entries.pop(key, None)
        if blob is not None:
            self.size -= PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(blob) + ENTRY_OVERHEAD

    def sync(self, txn):
        cdef long long tid = txn.id(), last, expect
        if tid == self.txn_id:
            return
        cur = txn.cursor(self.changes_db)
        last = int.from_bytes(cur.key(), "big") if cur.last() else 0
        if self.txn_id < 0 or last < self.last_change:
            self.clear()
        elif last > self.last_change:
            if last - self.last_change > max(RESYNC_LIMIT, len(self._entries)):
                self.clear()
            elif cur.set_range((self.last_change + 1).to_bytes(8, "big")):
                expect = self.last_change + 1
                for k, v in cur:
                    if (int.from_bytes(k, "big") != expect or len(v) < CHANGE_HEADER
                            or v[0] == ACTION_HOME_PREFIX or v[0] == ACTION_UNHOME_PREFIX):
                        self.clear()
                        break
                    klen = v[CHANGE_KEY_LENGTH] * 256 + v[CHANGE_KEY_LENGTH + 1]
                    self._forget(bytes(v[CHANGE_HEADER : CHANGE_HEADER + klen]))
                    expect += 1
        self.last_change = last
        self.txn_id = tid


# -- store lookup and value selection, shared by http_resolve and handle_resolve -------------

cdef object _lookup(bytes key, object txn, object records_db, object prefixes_db,
                    list held=None, RecordCache cache=None):
    """Stored record bytes; ``_MISS`` under a held prefix; None when the prefix is not held.
    Positional arguments to ``get``: py-lmdb parses keywords slowly (~0.4 µs a call).
    ``held``, when given, is ``[prefix key or None]``: the last prefix found held in this same
    transaction (a snapshot: it stays held), so a burst under one prefix looks it up once.
    ``cache``: a ``RecordCache`` synced to ``txn``; a cached record's prefix is held."""
    cdef const unsigned char* k = <const unsigned char*>PyBytes_AS_STRING(key)
    cdef Py_ssize_t kn = PyBytes_GET_SIZE(key), slash = 0, i
    cdef object blob, pk
    if kn > 5 and memcmp(k, b"0.NA/", 5) == 0:
        blob = txn.get(key[5:], None, prefixes_db)
        if blob is None:
            return None
    else:
        for i in range(kn):
            if k[i] == 47:
                slash = i
                break
        if cache is not None:
            blob = cache._get(key)
            if blob is not None:
                return blob
        pk = held[0] if held is not None else None
        if (pk is None or PyBytes_GET_SIZE(pk) != slash
                or memcmp(PyBytes_AS_STRING(pk), k, slash) != 0):
            pk = key[:slash]
            if txn.get(pk, None, prefixes_db) is None:
                return None
            if held is not None:
                held[0] = pk
        blob = txn.get(key, None, records_db)
        if blob is None:
            return _MISS
    if type(blob) is not bytes:
        blob = bytes(blob)
    if cache is not None and kn > 5 and memcmp(k, b"0.NA/", 5) != 0:
        cache._put(key, blob)
    return blob


# -- resolution statistics (contract: _hotpath_py.handle_resolve, ``tally``) ----------------
# A dict update keyed by a new tuple costs ~1500 instructions (a tuple, two hashes, two tuple
# compares, ints), more than a pumped answer can spare.  So replies are counted in C first, in
# a ``Tally``: a few (prefix, outcome) slots, each holding its prefix's bytes and a count, found
# by memcmp.  ``_tally_flush`` adds the slots to the caller's dict — once per call of the
# public functions (~750 instructions with the last key reused), once per burst in
# ``UdpPump.run`` (nothing can read the dict in between): a pumped reply costs a memcmp.

cdef str TALLY_OK = "ok"
cdef str TALLY_NOT_FOUND = "not_found"
cdef str TALLY_VALUES_NOT_FOUND = "values_not_found"
cdef tuple _OUTCOMES = (TALLY_OK, TALLY_NOT_FOUND, TALLY_VALUES_NOT_FOUND)
cdef bytes NA_PREFIX = b"0.NA"

_CONSTANTS.update({"TALLY_OK": TALLY_OK, "TALLY_NOT_FOUND": TALLY_NOT_FOUND,
                   "TALLY_VALUES_NOT_FOUND": TALLY_VALUES_NOT_FOUND})  # fmt: skip

cdef enum:
    OUT_OK = 0  # indexes into _OUTCOMES
    OUT_NOT_FOUND = 1
    OUT_VALUES_NOT_FOUND = 2
    TALLY_SLOTS = 8  # distinct (prefix, outcome) pairs held before a flush

cdef struct TallySlot:
    PyObject* prefix  # a reference of the slot's own (bytes), released by _tally_flush
    const char* data  # the prefix's bytes and length
    Py_ssize_t len
    Py_ssize_t count
    int outcome

cdef struct Tally:
    PyObject* counts  # the caller's dict, which the caller holds for as long as the tally
    int n
    TallySlot slot[TALLY_SLOTS]


cdef inline int _outcome(unsigned int rc) noexcept nogil:
    if rc == RC_SUCCESS:
        return OUT_OK
    return OUT_NOT_FOUND if rc == RC_NOT_FOUND else OUT_VALUES_NOT_FOUND


cdef int _tally_add(Tally* t, bytes key, int outcome) except -1:
    """One reply more for ``key``'s prefix (up to its first '/') and ``outcome``."""
    cdef const char* k = PyBytes_AS_STRING(key)
    cdef Py_ssize_t kn = PyBytes_GET_SIZE(key)
    cdef const char* slash = <const char*>memchr(k, 47, kn)
    cdef Py_ssize_t n = slash - k if slash != NULL else kn  # a storage key has its '/'
    cdef TallySlot* s
    cdef object prefix
    cdef int i
    for i in range(t.n):
        s = &t.slot[i]
        if s.outcome == outcome and s.len == n and memcmp(s.data, k, n) == 0:
            s.count += 1
            return 0
    if t.n == TALLY_SLOTS:
        _tally_flush(t)
    if n == 4 and memcmp(k, b"0.NA", 4) == 0:
        prefix = NA_PREFIX
    else:
        prefix = PyBytes_FromStringAndSize(k, n)
    s = &t.slot[t.n]
    Py_INCREF(prefix)
    s.prefix = <PyObject*>prefix
    s.data = PyBytes_AS_STRING(prefix)
    s.len = n
    s.count = 1
    s.outcome = outcome
    t.n += 1
    return 0


cdef tuple _last_entry = (b"", "")  # the key last counted: the dict finds it by identity


cdef int _tally_flush(Tally* t) except -1:
    """``counts[(prefix, outcome)] += count`` (from 0) for every slot; empties the tally.  The
    slots' references are released even when an update raises."""
    global _last_entry
    cdef int i, n = t.n
    cdef object entry
    cdef bytes last
    cdef PyObject* old
    t.n = 0
    try:
        for i in range(n):
            last = <bytes>_last_entry[0]
            if (_last_entry[1] is _OUTCOMES[t.slot[i].outcome]
                    and PyBytes_GET_SIZE(last) == t.slot[i].len
                    and memcmp(PyBytes_AS_STRING(last), t.slot[i].data, t.slot[i].len) == 0):
                entry = _last_entry
            else:
                entry = (<object>t.slot[i].prefix, _OUTCOMES[t.slot[i].outcome])
                _last_entry = entry
            old = PyDict_GetItem(<object>t.counts, entry)  # borrowed, or NULL: not counted yet
            PyDict_SetItem(<object>t.counts, entry, t.slot[i].count if old == NULL
                           else <object>old + t.slot[i].count)  # fmt: skip
    finally:
        for i in range(n):
            Py_XDECREF(t.slot[i].prefix)
    return 0


cdef struct Layout:
    Py_ssize_t n
    Py_ssize_t wstart
    Py_ssize_t wlen
    Py_ssize_t jstart
    Py_ssize_t jlen
    bint all_public


cdef struct Filter:
    bint active  # any filter was given (even one that can match nothing)
    const unsigned char* idx  # nidx int4 indexes
    Py_ssize_t nidx
    const unsigned char* types  # ntypes UTF8-Strings, lengths already checked
    Py_ssize_t ntypes


cdef struct Span:
    Py_ssize_t off
    Py_ssize_t len


cdef bint _layout(const unsigned char* b, Py_ssize_t size, Layout* L) noexcept nogil:
    """Read a stored record's header; False when its framing is inconsistent."""
    if size < HEADER_SIZE or b[0] != LAYOUT_VERSION:
        return False
    L.n = (<Py_ssize_t>b[2] << 8) | b[3]
    L.wlen = _u32(b + 4)
    L.jlen = _u32(b + 8)
    L.wstart = HEADER_SIZE + DIR_SIZE * L.n
    L.jstart = L.wstart + L.wlen
    L.all_public = (b[1] & ALL_PUBLIC) != 0
    return L.jstart + L.jlen == size


cdef inline bint _eq_ci(const unsigned char* a, const unsigned char* b,
                        Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if _up(a[i]) != _up(b[i]):
            return False
    return True


cdef bint _type_in(const unsigned char* vt, Py_ssize_t vl, const unsigned char* t,
                   Py_ssize_t ntypes) noexcept nogil:
    # Reference Util.isParentTypeInArray: "X." matches X and X.*; else exact; ASCII-CI.
    cdef Py_ssize_t i, tl
    for i in range(ntypes):
        tl = _u32(t)
        t += 4
        if tl > 0 and t[tl - 1] == 46:
            if (vl >= tl or vl == tl - 1) and _eq_ci(vt, t, tl if vl >= tl else vl):
                return True
        elif vl == tl and _eq_ci(vt, t, vl):
            return True
        t += tl
    return False


cdef inline bint _index_in(unsigned int index, const unsigned char* idx,
                           Py_ssize_t nidx) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(nidx):
        if _u32(idx + 4 * i) == index:
            return True
    return False


cdef Py_ssize_t _pick(const unsigned char* b, const Layout* L, const Filter* f, bint json,
                      Span* out, Py_ssize_t* total, bint* withheld) noexcept nogil:
    """The public values ``f`` selects, as slices of the JSON or the wire section, in record
    order; their count (``total`` = their summed length), or -1 for an inconsistent record.
    ``withheld``: a value ``f`` selects was left out for lack of public read."""
    cdef Py_ssize_t i, d, v, wo, wl, jo, jl, tl, t0, k = 0, sum = 0
    cdef bint selected
    withheld[0] = False
    for i in range(L.n):
        d = HEADER_SIZE + DIR_SIZE * i
        wo = _u32(b + d)
        wl = _u32(b + d + 4)
        jo = _u32(b + d + 8)
        jl = _u32(b + d + 12)
        if wl < VALUE_MIN or wo + wl > L.wlen or jo + jl > L.jlen:
            return -1
        v = L.wstart + wo
        if f.active:
            selected = f.nidx > 0 and _index_in(_u32(b + v), f.idx, f.nidx)
            if not selected and f.ntypes > 0:
                tl = _u32(b + v + VALUE_TYPE)
                t0 = v + VALUE_TYPE + 4
                if t0 + tl > v + wl:
                    return -1
                selected = _type_in(b + t0, tl, f.types, f.ntypes)
            if not selected:
                continue
        if not (b[v + VALUE_PERMS] & PERM_PUBLIC_READ):
            withheld[0] = True
            continue
        if json:
            out[k].off = L.jstart + jo
            out[k].len = jl
        else:
            out[k].off = v
            out[k].len = wl
        sum += out[k].len
        k += 1
    total[0] = sum
    return k


cdef Span* _spans(Py_ssize_t n, Span* stack) except NULL:
    cdef Span* p
    if n <= STACK_SPANS:
        return stack
    p = <Span*>PyMem_Malloc(n * sizeof(Span))
    if p == NULL:
        raise MemoryError()
    return p


cdef bytes _http_filter(object types, object indexes, Filter* f):
    """The HTTP query's filters in wire form (the bytes ``f`` points into; keep them alive).
    An index outside int4 can match no value, so it is left out (``f.active`` stays set)."""
    cdef Py_ssize_t nidx = 0, ntypes = 0, size = 0
    cdef bytes buf, t
    cdef unsigned char* p
    cdef object i
    f.active = bool(types) or bool(indexes)
    f.nidx = 0
    f.ntypes = 0
    if not f.active:
        return None
    if indexes:
        for i in indexes:
            if -2147483648 <= i <= 2147483647:
                nidx += 1
    if types:
        for t in types:
            ntypes += 1
            size += 4 + len(t)
    buf = PyBytes_FromStringAndSize(NULL, 4 * nidx + size)
    p = <unsigned char*>PyBytes_AS_STRING(buf)
    f.idx = p
    f.nidx = nidx
    if nidx:
        for i in indexes:
            if -2147483648 <= i <= 2147483647:
                _put32(p, <unsigned int><int>i)
                p += 4
    f.types = p
    f.ntypes = ntypes
    if ntypes:
        for t in types:
            size = PyBytes_GET_SIZE(t)
            _put32(p, <unsigned int>size)
            memcpy(p + 4, PyBytes_AS_STRING(t), size)
            p += 4 + size
    return buf


# -- HTTP ------------------------------------------------------------------------------------

cdef bytes _json_hit(bytes esc, const unsigned char* b, const Span* parts, Py_ssize_t k,
                     Py_ssize_t total, bint whole):
    # {"responseCode":1,"handle":"<esc>","values":<section>}  or  ...:[p1,p2,...]}
    cdef Py_ssize_t hl = PyBytes_GET_SIZE(HEAD_OK), ml = PyBytes_GET_SIZE(MID_OK)
    cdef Py_ssize_t el = PyBytes_GET_SIZE(esc), i
    cdef Py_ssize_t size = hl + el + ml + total + (1 if whole else k + 2)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* o = <unsigned char*>PyBytes_AS_STRING(out)
    memcpy(o, PyBytes_AS_STRING(HEAD_OK), hl)
    o += hl
    memcpy(o, PyBytes_AS_STRING(esc), el)
    o += el
    memcpy(o, PyBytes_AS_STRING(MID_OK), ml)
    o += ml
    if whole:
        memcpy(o, b + parts[0].off, parts[0].len)
        o[parts[0].len] = 125  # }
        return out
    o[0] = 91  # [
    o += 1
    for i in range(k):
        if i:
            o[0] = 44  # ,
            o += 1
        memcpy(o, b + parts[i].off, parts[i].len)
        o += parts[i].len
    o[0] = 93  # ]
    o[1] = 125  # }
    return out


cdef object _http_answer(bytes blob, bytes handle, object types, object indexes,
                         unsigned int* rc):
    # ``rc``: set to the responseCode of the body returned (1 or 200).
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(blob)
    cdef Layout L
    cdef Filter f
    cdef Span whole
    cdef Span stack[STACK_SPANS]
    cdef Span* spans
    cdef Py_ssize_t k, total = 0
    cdef bint withheld  # public-only answers: withheld values are simply not shown
    cdef bytes keep, esc
    if not _layout(b, PyBytes_GET_SIZE(blob), &L):
        return None
    keep = _http_filter(types, indexes, &f)
    esc = json_escape(handle)
    rc[0] = RC_SUCCESS
    if not f.active and L.all_public:
        whole.off = L.jstart
        whole.len = L.jlen
        return _json_hit(esc, b, &whole, 1, L.jlen, True)
    spans = _spans(L.n, stack)
    try:
        k = _pick(b, &L, &f, True, spans, &total, &withheld)
        if k < 0:
            return None
        if k == 0:
            rc[0] = RC_VALUES_NOT_FOUND
            return b"".join((HEAD_200, esc, TAIL_ERR))
        return _json_hit(esc, b, spans, k, total, False)
    finally:
        if spans != stack:
            PyMem_Free(spans)


def http_resolve(bytes handle, object types, object indexes, bint public_only, object txn,
                 object records_db, object prefixes_db, bint case_sensitive=False,
                 dict tally=None):
    """Contract: ``_hotpath_py.http_resolve``."""
    cdef object key, blob, out
    cdef unsigned int rc = RC_NOT_FOUND
    cdef Tally t
    if not public_only:
        return None
    key = normalize_key(handle, case_sensitive)
    if key is None:
        return None
    blob = _lookup(key, txn, records_db, prefixes_db)
    if blob is None:
        return None
    if blob is _MISS:
        out = b"".join((HEAD_100, json_escape(handle), TAIL_ERR))
    else:
        out = _http_answer(blob, handle, types, indexes, &rc)
        if out is None:
            return None
    if tally is not None:
        t.counts = <PyObject*>tally
        t.n = 0
        _tally_add(&t, key, _outcome(rc))
        _tally_flush(&t)
    return out


# -- Handle protocol -------------------------------------------------------------------------

def handle_resolve(data, object txn, object records_db, object prefixes_db,
                   bint case_sensitive=False, RecordCache cache=None, dict tally=None):
    """Contract: ``_hotpath_py.handle_resolve``."""
    cdef bytes req = data if type(data) is bytes else bytes(data)
    cdef Tally t
    cdef object out
    t.counts = <PyObject*>tally
    t.n = 0
    out = _handle_answer(<const unsigned char*>PyBytes_AS_STRING(req), PyBytes_GET_SIZE(req),
                         txn, records_db, prefixes_db, case_sensitive, None, cache,
                         &t if tally is not None else NULL)
    if t.n:
        _tally_flush(&t)
    return out


cdef object _handle_answer(const unsigned char* d, Py_ssize_t n, object txn, object records_db,
                           object prefixes_db, bint case_sensitive, list held,
                           RecordCache cache, Tally* tally):
    cdef Py_ssize_t end, p, hl, count, tl, i, k = 0, total = 0, values_len = 0, body_len, dlen = 0
    cdef bint withheld = False
    cdef unsigned int opflags, rc
    cdef unsigned char vmaj, vmin, code = 0
    cdef Filter f
    cdef Layout L
    cdef Span stack[STACK_SPANS]
    cdef Span* spans = stack
    cdef const unsigned char* b = NULL
    cdef object key, blob, digest = None
    cdef bytes out, request
    cdef unsigned char* o
    # Envelope and header: protocol 2.x, no CP/EC/TC, sequence 0, length = what follows,
    # op code 1, response code 0, neither certify nor encrypt.
    if n < MIN_REQUEST or d[0] != PROTOCOL_MAJOR or (d[2] & 0xE0):
        return None
    if _u32(d + 12) != 0 or <Py_ssize_t>_u32(d + 16) != n - ENV or n - ENV > MAX_MESSAGE:
        return None
    if _u32(d + 20) != 1 or _u32(d + 24) != 0:
        return None
    opflags = _u32(d + 28)
    if opflags & FLAGS_NOT_FAST:
        return None
    end = HDR_END + <Py_ssize_t>_u32(d + 40)
    if end + 4 != n or _u32(d + end) != 0:  # no credential
        return None
    # Body: str handle, int4[] indexes, str[] types; every length checked against ``end``.
    # A read at p <= end stays inside the message: the credential length follows ``end``.
    hl = <int>_u32(d + HDR_END)
    p = HDR_END + 4 + hl
    if hl < 0 or p + 4 > end:
        return None
    count = <int>_u32(d + p)
    p += 4
    if count < 0 or p + 4 * count + 4 > end:
        return None
    f.idx = d + p
    f.nidx = count
    p += 4 * count
    count = <int>_u32(d + p)
    p += 4
    if count < 0 or 4 * count > end - p:
        return None
    f.types = d + p
    f.ntypes = count
    for i in range(count):
        tl = <int>_u32(d + p)
        if tl < 0 or p + 4 + tl > end:
            return None
        p += 4 + tl
    if p != end:
        return None
    f.active = f.nidx > 0 or f.ntypes > 0

    key = _normalize(d + HDR_END + 4, hl, case_sensitive)
    if key is None:
        return None
    blob = _lookup(key, txn, records_db, prefixes_db, held, cache)
    if blob is None:
        return None
    try:
        if blob is _MISS:
            rc = RC_NOT_FOUND
        else:
            b = <const unsigned char*>PyBytes_AS_STRING(blob)
            if not _layout(b, PyBytes_GET_SIZE(blob), &L):
                return None
            if not f.active and L.all_public:
                rc = RC_SUCCESS
                k = -1  # the whole wire section, its int4 count included
                values_len = L.wlen
            else:
                spans = _spans(L.n, stack)
                k = _pick(b, &L, &f, False, spans, &total, &withheld)
                if k < 0:
                    return None
                if withheld and not (opflags & FLAG_PUBLIC_ONLY):
                    return None  # values without public read asked for: the general path
                rc = RC_SUCCESS if k else RC_VALUES_NOT_FOUND
                values_len = 4 + total
        # Version: min(suggested, ours); suggested = low 2 bits of byte 2 + byte 3, or the actual
        # version when the suggested major is 0 (reference Encoder.decodeEnvelope).
        if d[2] & 0x03:
            vmaj, vmin = d[2] & 0x03, d[3]
        else:
            vmaj, vmin = d[0], d[1]
        if vmaj > PROTOCOL_MAJOR or (vmaj == PROTOCOL_MAJOR and vmin > PROTOCOL_MINOR):
            vmaj, vmin = PROTOCOL_MAJOR, PROTOCOL_MINOR
        if opflags & FLAG_REQUEST_DIGEST:
            request = PyBytes_FromStringAndSize(<const char*>d + ENV, end - ENV)
            if vmaj < 2 or (vmaj == 2 and vmin < 1):
                digest = _md5(request).digest()
                dlen = 4 + 16  # old format: int4 length + MD5
            elif vmaj == 2 and vmin >= 7:
                digest = _sha256(request).digest()
                code = 3
                dlen = 1 + 32
            else:
                digest = _sha1(request).digest()
                code = 2
                dlen = 1 + 20
        if rc == RC_SUCCESS:
            body_len = dlen + 4 + hl + values_len
        else:
            body_len = dlen + 4  # an empty error message
        if HDR_END - ENV + body_len + 4 > MAX_MESSAGE:
            return None  # too long to send: the general path answers with an error
        out = PyBytes_FromStringAndSize(NULL, HDR_END + body_len + 4)
        o = <unsigned char*>PyBytes_AS_STRING(out)
        o[0] = vmaj
        o[1] = vmin
        o[2] = PROTOCOL_MAJOR
        o[3] = PROTOCOL_MINOR
        memcpy(o + 4, d + 4, 8)  # session id, request id
        _put32(o + 12, 0)
        _put32(o + 16, <unsigned int>(HDR_END - ENV + body_len + 4))
        memcpy(o + 20, d + 20, 4)  # op code
        _put32(o + 24, rc)
        memcpy(o + 28, d + 28, 12)  # flags, site serial, recursion, reserved, expiration
        _put32(o + 40, <unsigned int>body_len)
        o += HDR_END
        if digest is not None:
            if code == 0:
                _put32(o, 16)
                o += 4
            else:
                o[0] = code
                o += 1
            memcpy(o, PyBytes_AS_STRING(digest), dlen - (4 if code == 0 else 1))
            o += dlen - (4 if code == 0 else 1)
        if rc == RC_SUCCESS:
            memcpy(o, d + HDR_END, 4 + hl)  # the handle as the client wrote it
            o += 4 + hl
            if k < 0:
                memcpy(o, b + L.wstart, L.wlen)
                o += L.wlen
            else:
                _put32(o, <unsigned int>k)
                o += 4
                for i in range(k):
                    memcpy(o, b + spans[i].off, spans[i].len)
                    o += spans[i].len
        else:
            _put32(o, 0)
            o += 4
        _put32(o, 0)  # credential length
        if tally != NULL:
            _tally_add(tally, key, _outcome(rc))
        return out
    finally:
        if spans != stack:
            PyMem_Free(spans)


# -- stored records from JSON values (contract: _hotpath_py.pack_json_values) -----------------
# Two passes over the values: the first checks every field into a C-level ``JValue`` and sums
# the exact size of the record, the second (``_emit``) writes it into one bytes object.  The
# ``JValue`` pointers are into the UTF-8 of strings the caller's list holds for the whole call
# (``pack_json_values``) or into the import line and a scratch buffer (``encode_jsonl_line``).

cdef extern from "Python.h":
    bint PyList_CheckExact(object o)
    bint PyDict_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyLong_CheckExact(object o)
    bint PyBytes_CheckExact(object o)
    bint PyTuple_CheckExact(object o)
    Py_ssize_t PyTuple_GET_SIZE(object o)
    PyObject* PyTuple_GET_ITEM(object o, Py_ssize_t i)
    Py_ssize_t PyList_GET_SIZE(object o)
    PyObject* PyList_GET_ITEM(object o, Py_ssize_t i)
    bint PyUnicode_IS_ASCII(object o)
    # Exact ints only: no error, an overflow is reported in ``overflow``.
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow)
    # NULL with an exception set for a str with a lone surrogate.
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size)
    void PyErr_Clear()
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    bint PyDict_Next(object d, Py_ssize_t* pos, PyObject** key, PyObject** value)

cdef extern from "stdlib.h":
    void qsort(void* base, size_t n, size_t size,
               int (*cmp)(const void*, const void*) noexcept nogil) nogil

cdef enum:
    DEFAULT_PERMISSIONS = 0x0E
    DEFAULT_TTL = 86400
    MAX_VALUES = 2048
    MAX_DATA_LENGTH = 262144
    STACK_VALUES = 16  # records of up to this many values need no heap allocation
    DUP_SORT = 32  # more values than this: duplicate indexes are found by sorting

_CONSTANTS.update({
    "DEFAULT_PERMISSIONS": DEFAULT_PERMISSIONS, "DEFAULT_TTL": DEFAULT_TTL,
    "MAX_VALUES": MAX_VALUES, "MAX_DATA_LENGTH": MAX_DATA_LENGTH,
    "STRUCTURED_TYPES": ("HS_ADMIN", "HS_VLIST", "HS_SITE", "HS_SITE.6", "HS_SITE.PREFIX",
                         "HS_NA_DELEGATE", "HS_PUBKEY"),
})  # fmt: skip
cdef frozenset _STRUCTURED = frozenset(_CONSTANTS["STRUCTURED_TYPES"])

# The members a value object may have, told apart by _member (one pass over the dict beats
# a hash lookup per member: orjson's key objects are not ours, so each lookup also compares).
cdef enum:
    M_OTHER = 0
    M_INDEX = 1
    M_TYPE = 2
    M_DATA = 3
    M_TTL = 4
    M_PERMS = 5
    M_FORMAT = 6
    M_VALUE = 7

# orjson's escaping of one UTF-8 byte: the bytes it adds (1: \" \\ \b \t \n \f \r; 5: \u00xx),
# and whether a byte makes data "look like binary" (Util.looksLikeBinary: C0 but 0x09–0x13, DEL).
cdef unsigned char _ESC_EXTRA[256]
cdef unsigned char _BINARY[256]
cdef int _c
for _c in range(256):
    _ESC_EXTRA[_c] = 0
    _BINARY[_c] = 1 if (_c < 0x09 or 0x13 < _c < 0x20 or _c == 0x7F) else 0
    if _c < 0x20:
        _ESC_EXTRA[_c] = 1 if _c in (8, 9, 10, 12, 13) else 5
    elif _c == 34 or _c == 92:
        _ESC_EXTRA[_c] = 1

# The JSON of one value, around its variable parts; C literals with their lengths as constants
# (a memcpy of a constant size is a few moves), checked against each other at import.
cdef const char* J_INDEX = b'{"index":'
cdef const char* J_TYPE = b',"type":"'
cdef const char* J_DATA = b'","data":{"format":"string","value":"'
cdef const char* J_DATA_END = b'"}'
cdef const char* J_PERMS = b',"permissions":"'  # + 4 digits + '"'
cdef const char* J_TTL = b',"ttl":'
cdef const char* J_STAMP = b',"timestamp":"'  # + now_text + '"'
cdef enum:
    J_INDEX_N = 9
    J_TYPE_N = 9
    J_DATA_N = 37
    J_DATA_END_N = 2
    J_PERMS_N = 16
    J_TTL_N = 7
    J_STAMP_N = 14
for _lit, _n in ((J_INDEX, J_INDEX_N), (J_TYPE, J_TYPE_N), (J_DATA, J_DATA_N),
                 (J_DATA_END, J_DATA_END_N), (J_PERMS, J_PERMS_N), (J_TTL, J_TTL_N),
                 (J_STAMP, J_STAMP_N)):  # fmt: skip
    if len(_lit) != _n:
        raise ImportError(f"native._hotpath: literal {_lit!r} is not {_n} bytes")
cdef const char* _HEX = b"0123456789abcdef"


cdef struct JValue:
    long long index
    long long ttl
    int perms
    const unsigned char* t  # type, UTF-8
    Py_ssize_t tl
    Py_ssize_t tx  # bytes its JSON escaping adds
    const unsigned char* d  # data, UTF-8
    Py_ssize_t dl
    Py_ssize_t dx
    Py_ssize_t jl  # length of the value's JSON
    bint measured  # tx and dx are known (0, for strings read in place without DEL)


cdef inline const unsigned char* _utf8(object s, Py_ssize_t* n) noexcept:
    """The UTF-8 of an exact str, or NULL (not a str, or a lone surrogate)."""
    cdef const char* p
    if not PyUnicode_CheckExact(s):
        return NULL
    p = PyUnicode_AsUTF8AndSize(s, n)
    if p == NULL:
        PyErr_Clear()
    return <const unsigned char*>p


cdef Py_ssize_t _escape_extra(const unsigned char* s, Py_ssize_t n, bint data) noexcept nogil:
    """Bytes orjson's escaping adds to ``s``; -1 when ``data`` and ``s`` looks like binary."""
    cdef Py_ssize_t i, extra = 0
    cdef unsigned char binary = 0
    for i in range(n):
        extra += _ESC_EXTRA[s[i]]
        binary |= _BINARY[s[i]]
    if data and binary:
        return -1
    return extra


cdef unsigned char* _put_escaped(unsigned char* o, const unsigned char* s, Py_ssize_t n,
                                 Py_ssize_t extra) noexcept nogil:
    cdef Py_ssize_t i
    cdef unsigned char c
    if extra == 0:
        memcpy(o, s, n)
        return o + n
    for i in range(n):
        c = s[i]
        if c >= 0x20:
            if c == 34 or c == 92:
                o[0] = 92
                o += 1
            o[0] = c
            o += 1
        else:
            o[0] = 92
            if c == 8:
                o[1] = 98  # b
            elif c == 9:
                o[1] = 116  # t
            elif c == 10:
                o[1] = 110  # n
            elif c == 12:
                o[1] = 102  # f
            elif c == 13:
                o[1] = 114  # r
            else:
                o[1] = 117  # u00xx
                o[2] = 48
                o[3] = 48
                o[4] = _HEX[c >> 4]
                o[5] = _HEX[c & 15]
                o += 4
            o += 2
    return o


cdef inline Py_ssize_t _int_len(long long x) noexcept nogil:
    cdef Py_ssize_t n = 1
    cdef unsigned long long u
    if x < 0:
        n = 2
        u = <unsigned long long>(-x)
    else:
        u = <unsigned long long>x
    while u >= 10:
        u //= 10
        n += 1
    return n


cdef inline unsigned char* _put_int(unsigned char* o, long long x, Py_ssize_t n) noexcept nogil:
    """Write ``x`` in decimal into exactly ``n`` = _int_len(x) bytes."""
    cdef unsigned long long u
    cdef unsigned char* p = o + n
    if x < 0:
        o[0] = 45
        u = <unsigned long long>(-x)
    else:
        u = <unsigned long long>x
    while True:
        p -= 1
        p[0] = <unsigned char>(48 + u % 10)
        u //= 10
        if u == 0:
            break
    return o + n


cdef inline unsigned char* _put_lit(unsigned char* o, const char* lit, size_t n) noexcept nogil:
    memcpy(o, lit, n)  # inlined: n is a constant at every call
    return o + n


cdef int _cmp_ll(const void* a, const void* b) noexcept nogil:
    cdef long long x = (<const long long*>a)[0], y = (<const long long*>b)[0]
    return (x > y) - (x < y)


cdef bint _has_duplicate(const JValue* v, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i, j
    cdef long long* idx
    cdef bint dup = False
    if n <= DUP_SORT:
        for i in range(1, n):
            for j in range(i):
                if v[i].index == v[j].index:
                    return True
        return False
    idx = <long long*>PyMem_Malloc(n * sizeof(long long))
    if idx == NULL:
        return True  # decline: the general path will find the memory or fail properly
    for i in range(n):
        idx[i] = v[i].index
    qsort(idx, n, sizeof(long long), _cmp_ll)
    for i in range(1, n):
        if idx[i] == idx[i - 1]:
            dup = True
            break
    PyMem_Free(idx)
    return dup


cdef inline int _member(PyObject* key) noexcept:
    """Which member a dict key names (M_*); M_OTHER for any other key."""
    cdef const char* k
    cdef Py_ssize_t n
    if not PyUnicode_CheckExact(<object>key) or not PyUnicode_IS_COMPACT_ASCII(<object>key):
        return M_OTHER
    k = <const char*>PyUnicode_DATA(<object>key)
    n = PyUnicode_GET_LENGTH(<object>key)
    if n == 4:
        if memcmp(k, b"type", 4) == 0:
            return M_TYPE
        if memcmp(k, b"data", 4) == 0:
            return M_DATA
    elif n == 5:
        if memcmp(k, b"index", 5) == 0:
            return M_INDEX
        if memcmp(k, b"value", 5) == 0:
            return M_VALUE
    elif n == 3:
        if memcmp(k, b"ttl", 3) == 0:
            return M_TTL
    elif n == 11:
        if memcmp(k, b"permissions", 11) == 0:
            return M_PERMS
    elif n == 6:
        if memcmp(k, b"format", 6) == 0:
            return M_FORMAT
    return M_OTHER


cdef inline int _perms(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Permissions text → the four bits: "*" or 0/1 digits, the last four being the bits; -1
    for anything else."""
    cdef Py_ssize_t i
    cdef int perms = 0
    if n == 1 and s[0] == 42:
        return 0x0F
    if n == 0:
        return -1
    for i in range(n):
        if s[i] != 48 and s[i] != 49:
            return -1
        perms = ((perms << 1) | (s[i] - 48)) & 0x0F
    return perms


cdef bint _finish(JValue* v, long long reserved_index) noexcept:
    """Check the ranges of a value whose fields are all set (structured types aside: checked
    by the reader, which has the type's text) and measure its JSON; False: decline."""
    if v.index < 1 or v.index > 0x7FFFFFFF or v.index == reserved_index:
        return False
    if v.ttl < -0x80000000 or v.ttl > 0x7FFFFFFF or v.perms < 0 or v.tl == 0:
        return False
    if v.dl > MAX_DATA_LENGTH:
        return False
    if not v.measured:
        v.tx = _escape_extra(v.t, v.tl, False)
        v.dx = _escape_extra(v.d, v.dl, True)
        if v.dx < 0:
            return False
    v.jl = (J_INDEX_N + _int_len(v.index) + J_TYPE_N + v.tl + v.tx + J_DATA_N + v.dl + v.dx
            + J_DATA_END_N + J_TTL_N + _int_len(v.ttl) + 1)
    if v.perms != DEFAULT_PERMISSIONS:
        v.jl += J_PERMS_N + 5
    return True


cdef inline bint _hs_(const unsigned char* t, Py_ssize_t n) noexcept nogil:
    """An ASCII type can be structured (STRUCTURED_TYPES) only if it starts "HS_" in any case."""
    return n >= 3 and _up(t[0]) == 72 and _up(t[1]) == 83 and t[2] == 95


cdef bint _read_value(object obj, JValue* v, long long reserved_index) noexcept:
    """Check one value object and fill ``v``; False: decline."""
    cdef PyObject* p_index
    cdef PyObject* p_type
    cdef PyObject* p_data
    cdef PyObject* p_ttl
    cdef PyObject* p_perms
    cdef PyObject* p_format = NULL
    cdef PyObject* p_value = NULL
    cdef PyObject* key
    cdef PyObject* p
    cdef Py_ssize_t pos = 0, pos2 = 0, n
    cdef int overflow = 0, m
    cdef const unsigned char* s
    cdef object data
    if not PyDict_CheckExact(obj):
        return False
    v.measured = False
    p_index = p_type = p_data = p_ttl = p_perms = NULL
    while PyDict_Next(obj, &pos, &key, &p):
        m = _member(key)
        if m == M_INDEX:
            p_index = p
        elif m == M_TYPE:
            p_type = p
        elif m == M_DATA:
            p_data = p
        elif m == M_TTL:
            p_ttl = p
        elif m == M_PERMS:
            p_perms = p
        else:
            return False  # a member this path does not write (timestamp, references, ...)
    if p_index == NULL or p_type == NULL or p_data == NULL:
        return False
    # index: an int (bool is not exact), 1..2^31-1 (_finish)
    if not PyLong_CheckExact(<object>p_index):
        return False
    v.index = PyLong_AsLongLongAndOverflow(<object>p_index, &overflow)
    if overflow:
        return False
    # type: non-empty, not one whose data is typed JSON (upper() as data_to_json compares;
    # only a non-ASCII type or one starting "HS_" can be one)
    v.t = _utf8(<object>p_type, &v.tl)
    if v.t == NULL:
        return False
    if not PyUnicode_IS_ASCII(<object>p_type) or _hs_(v.t, v.tl):
        if (<object>p_type).upper() in _STRUCTURED:
            return False
    # data: a str or exactly {"format": "string", "value": str}
    data = <object>p_data
    if PyDict_CheckExact(data):
        while PyDict_Next(data, &pos2, &key, &p):
            m = _member(key)
            if m == M_FORMAT:
                p_format = p
            elif m == M_VALUE:
                p_value = p
            else:
                return False
        if p_format == NULL or p_value == NULL:
            return False
        s = _utf8(<object>p_format, &n)
        if s == NULL or n != 6 or memcmp(s, b"string", 6) != 0:
            return False
        data = <object>p_value
    v.d = _utf8(data, &v.dl)
    if v.d == NULL:
        return False
    # ttl: absent or null → the default; else an int32 (relative seconds)
    v.ttl = DEFAULT_TTL
    if p_ttl != NULL and <object>p_ttl is not None:
        if not PyLong_CheckExact(<object>p_ttl):
            return False
        v.ttl = PyLong_AsLongLongAndOverflow(<object>p_ttl, &overflow)
        if overflow:
            return False
    # permissions: "*" or 0/1 digits (_perms)
    v.perms = DEFAULT_PERMISSIONS
    if p_perms != NULL:
        s = _utf8(<object>p_perms, &n)
        if s == NULL:
            return False
        v.perms = _perms(s, n)
    return _finish(v, reserved_index)


cdef object _pack_values(object values, unsigned int now, bytes now_text,
                         long long reserved_index, JValue* v, Py_ssize_t n):
    cdef Py_ssize_t i
    for i in range(n):
        if not _read_value(<object>PyList_GET_ITEM(values, i), &v[i], reserved_index):
            return None
    return _emit(v, n, now, now_text)


cdef object _emit(JValue* v, Py_ssize_t n, unsigned int now, bytes now_text):
    """The stored record of ``n`` >= 1 values checked by ``_finish``, or None (a duplicate
    index, a section over 2^31-1 bytes)."""
    cdef Py_ssize_t i, k, wsum = 4, jsum = 1, stamp = 0, total
    cdef unsigned char* o
    cdef unsigned char* w
    cdef unsigned char* j
    cdef unsigned char* dirp
    cdef unsigned int woff = 4, joff = 1
    cdef bint all_public = True
    cdef bytes out
    if now:
        stamp = J_STAMP_N + PyBytes_GET_SIZE(now_text) + 1
    for i in range(n):
        v[i].jl += stamp
        wsum += VALUE_MIN + v[i].tl + v[i].dl
        jsum += v[i].jl + 1  # its comma, or the closing bracket
        all_public = all_public and (v[i].perms & PERM_PUBLIC_READ) != 0
    if _has_duplicate(v, n) or wsum > 0x7FFFFFFF or jsum > 0x7FFFFFFF:
        return None
    total = HEADER_SIZE + DIR_SIZE * n + wsum + jsum
    out = PyBytes_FromStringAndSize(NULL, total)
    o = <unsigned char*>PyBytes_AS_STRING(out)
    o[0] = LAYOUT_VERSION
    o[1] = ALL_PUBLIC if all_public else 0
    o[2] = <unsigned char>(n >> 8)
    o[3] = <unsigned char>n
    _put32(o + 4, <unsigned int>wsum)
    _put32(o + 8, <unsigned int>jsum)
    dirp = o + HEADER_SIZE
    w = dirp + DIR_SIZE * n
    j = w + wsum
    _put32(w, <unsigned int>n)
    w += 4
    j[0] = 91  # [
    j += 1
    for i in range(n):
        k = VALUE_MIN + v[i].tl + v[i].dl
        _put32(dirp, woff)
        _put32(dirp + 4, <unsigned int>k)
        _put32(dirp + 8, joff)
        _put32(dirp + 12, <unsigned int>v[i].jl)
        dirp += DIR_SIZE
        woff += <unsigned int>k
        joff += <unsigned int>v[i].jl + 1
        # wire (RFC 3652 §2.2): index, timestamp, ttl type 0, ttl, permissions, type, data, 0 refs
        _put32(w, <unsigned int>v[i].index)
        _put32(w + 4, now)
        w[8] = 0
        _put32(w + 9, <unsigned int>v[i].ttl)  # two's complement, as int4
        w[13] = <unsigned char>v[i].perms
        _put32(w + 14, <unsigned int>v[i].tl)
        memcpy(w + 18, v[i].t, v[i].tl)
        w += 18 + v[i].tl
        _put32(w, <unsigned int>v[i].dl)
        memcpy(w + 4, v[i].d, v[i].dl)
        w += 4 + v[i].dl
        _put32(w, 0)
        w += 4
        # JSON, as orjson.dumps(valuejson.value_to_json(value))
        j = _put_lit(j, J_INDEX, J_INDEX_N)
        j = _put_int(j, v[i].index, _int_len(v[i].index))
        j = _put_lit(j, J_TYPE, J_TYPE_N)
        j = _put_escaped(j, v[i].t, v[i].tl, v[i].tx)
        j = _put_lit(j, J_DATA, J_DATA_N)
        j = _put_escaped(j, v[i].d, v[i].dl, v[i].dx)
        j = _put_lit(j, J_DATA_END, J_DATA_END_N)
        if v[i].perms != DEFAULT_PERMISSIONS:
            j = _put_lit(j, J_PERMS, J_PERMS_N)
            j[0] = 48 + ((v[i].perms >> 3) & 1)
            j[1] = 48 + ((v[i].perms >> 2) & 1)
            j[2] = 48 + ((v[i].perms >> 1) & 1)
            j[3] = 48 + (v[i].perms & 1)
            j[4] = 34
            j += 5
        j = _put_lit(j, J_TTL, J_TTL_N)
        j = _put_int(j, v[i].ttl, _int_len(v[i].ttl))
        if now:
            j = _put_lit(j, J_STAMP, J_STAMP_N)
            memcpy(j, PyBytes_AS_STRING(now_text), stamp - J_STAMP_N - 1)
            j += stamp - J_STAMP_N - 1
            j[0] = 34
            j += 1
        j[0] = 125  # }
        j[1] = 44 if i + 1 < n else 93  # , or ]
        j += 2
    return out


def pack_json_values(object values, object now, bytes now_text not None,
                     long long reserved_index):
    cdef Py_ssize_t n
    cdef long long t
    cdef int overflow = 0
    cdef JValue stack[STACK_VALUES]
    cdef JValue* v
    if not PyList_CheckExact(values) or not PyLong_CheckExact(now):
        return None
    n = PyList_GET_SIZE(values)
    t = PyLong_AsLongLongAndOverflow(now, &overflow)
    if n < 1 or n > MAX_VALUES or overflow or t < 0 or t > 0x7FFFFFFF:
        return None
    if n <= STACK_VALUES:
        return _pack_values(values, <unsigned int>t, now_text, reserved_index, stack, n)
    v = <JValue*>PyMem_Malloc(n * sizeof(JValue))
    if v == NULL:
        raise MemoryError()
    try:
        return _pack_values(values, <unsigned int>t, now_text, reserved_index, v, n)
    finally:
        PyMem_Free(v)


# -- JSONL import lines (contracts: _hotpath_py.encode_jsonl_line, encode_jsonl_lines) ----
# One pass over the line's bytes fills the JValues pack_json_values' reader fills from dicts,
# then ``_emit`` writes the record; ``encode_jsonl_lines`` runs the same ``_encode_line`` over
# a region's lines in one call, making only the key and the record of each line taken.  A
# string without escapes is pointed at in place; one with escapes is decoded into a scratch
# buffer as long as the line (no string decodes longer than its JSON text, so the buffer never
# moves).  No bounds check per byte: CPython keeps a NUL after a bytes object's last byte, and
# a NUL matches nothing the scanner accepts (orjson rejects a raw NUL too), so every scan stops
# there at the latest.

cdef extern from "Python.h":
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    void* PyMem_Realloc(void* p, size_t n)

cdef enum:
    M_HANDLE = 8
    M_VALUES = 9
    STACK_SCRATCH = 1024  # lines up to this long decode their escapes on the stack

cdef struct Scan:
    const unsigned char* p  # the next byte to read
    unsigned char* buf  # decoded strings; NULL until the first escape
    unsigned char* o  # the next free byte of buf
    unsigned char* stack  # STACK_SCRATCH bytes of the caller's stack
    Py_ssize_t size  # the line's length, buf's size
    bint heap  # buf is allocated (and freed by the caller)


# Bytes a string's text may hold without a second look: printable ASCII but '"' and '\\';
# and JSON's whitespace: space, tab, LF, CR (nothing else: orjson rejects FF, VT, NBSP, BOM).
cdef unsigned char _PLAIN[256]
cdef unsigned char _WS[256]
for _c in range(256):
    _PLAIN[_c] = 1 if 0x20 <= _c < 0x7F and _c != 34 and _c != 92 else 0
    _WS[_c] = 1 if _c in (32, 9, 10, 13) else 0

# Member names with their closing quote, by M_* (M_OTHER's is never tried).  The tuple keeps
# the bytes the pointers point into.
cdef tuple _NAME_TEXT = (b"\0", b'index"', b'type"', b'data"', b'ttl"', b'permissions"',
                         b'format"', b'value"', b'handle"', b'values"')  # fmt: skip
cdef const char* _NAMES[10]
cdef int _NAME_N[10]
for _c in range(10):
    _NAMES[_c] = PyBytes_AS_STRING(_NAME_TEXT[_c])
    _NAME_N[_c] = PyBytes_GET_SIZE(_NAME_TEXT[_c])
if (M_INDEX, M_TYPE, M_DATA, M_TTL, M_PERMS, M_FORMAT, M_VALUE, M_HANDLE, M_VALUES) != tuple(
        range(1, 10)):  # fmt: skip
    raise ImportError("native._hotpath: member ids out of step with _NAME_TEXT")


cdef inline const unsigned char* _ws(const unsigned char* p) noexcept nogil:
    while _WS[p[0]]:
        p += 1
    return p


cdef inline int _hex(unsigned char c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return -1


cdef inline long _hex4(const unsigned char* p) noexcept nogil:
    """The four hex digits at ``p`` (either case), or -1; reads no further than a non-digit."""
    cdef long x = 0
    cdef int i, d
    for i in range(4):
        d = _hex(p[i])
        if d < 0:
            return -1
        x = (x << 4) | d
    return x


cdef inline unsigned char* _put_utf8(unsigned char* o, long cp) noexcept nogil:
    if cp < 0x80:
        o[0] = <unsigned char>cp
        return o + 1
    if cp < 0x800:
        o[0] = <unsigned char>(0xC0 | (cp >> 6))
        o[1] = <unsigned char>(0x80 | (cp & 0x3F))
        return o + 2
    if cp < 0x10000:
        o[0] = <unsigned char>(0xE0 | (cp >> 12))
        o[1] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
        o[2] = <unsigned char>(0x80 | (cp & 0x3F))
        return o + 3
    o[0] = <unsigned char>(0xF0 | (cp >> 18))
    o[1] = <unsigned char>(0x80 | ((cp >> 12) & 0x3F))
    o[2] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
    o[3] = <unsigned char>(0x80 | (cp & 0x3F))
    return o + 4


cdef int _string(Scan* s, const unsigned char** out, Py_ssize_t* n) noexcept:
    """The JSON string at ``s.p`` (its opening quote) as UTF-8, decoded as orjson decodes it;
    ``s.p`` moves past it.  0: outside the subset (raw control byte, invalid UTF-8, unknown
    escape, lone surrogate escape, no closing quote); 1: read in place and free of DEL (so
    nothing in it needs escaping or looks like binary); 2: any other string."""
    cdef const unsigned char* p = s.p + 1
    cdef const unsigned char* start = p
    cdef unsigned char* o
    cdef unsigned char c
    cdef int k, plain = 1
    cdef long cp, lo
    while True:  # the common case: no escape, the text stays where it is
        while _PLAIN[p[0]]:
            p += 1
        c = p[0]
        if c == 34:
            out[0] = start
            n[0] = p - start
            s.p = p + 1
            return plain
        if c == 92:
            break
        if c < 0x20:
            return 0
        if c == 0x7F:
            plain = 2
            p += 1
        else:
            k = _utf8_seq(p)
            if k == 0:
                return 0
            p += k
    if s.buf == NULL:
        if s.size <= STACK_SCRATCH:
            s.buf = s.stack
        else:
            s.buf = <unsigned char*>PyMem_Malloc(s.size)
            if s.buf == NULL:
                return 0
            s.heap = True
        s.o = s.buf
    o = s.o
    memcpy(o, start, p - start)
    o += p - start
    while True:
        c = p[0]
        if c == 34:
            break
        if c == 92:
            c = p[1]
            if c == 34 or c == 92 or c == 47:  # \" \\ \/
                o[0] = c
            elif c == 98:
                o[0] = 8
            elif c == 102:
                o[0] = 12
            elif c == 110:
                o[0] = 10
            elif c == 114:
                o[0] = 13
            elif c == 116:
                o[0] = 9
            elif c == 117:  # \uXXXX; a surrogate pair is one code point, a lone half declines
                cp = _hex4(p + 2)
                if cp < 0:
                    return 0
                p += 6
                if 0xD800 <= cp <= 0xDBFF:
                    if p[0] != 92 or p[1] != 117:
                        return 0
                    lo = _hex4(p + 2)
                    if lo < 0xDC00 or lo > 0xDFFF:
                        return 0
                    p += 6
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                elif 0xDC00 <= cp <= 0xDFFF:
                    return 0
                o = _put_utf8(o, cp)
                continue
            else:
                return 0
            o += 1
            p += 2
        elif c < 0x20:
            return 0
        elif c < 0x80:
            o[0] = c
            o += 1
            p += 1
        else:
            k = _utf8_seq(p)
            if k == 0:
                return 0
            memcpy(o, p, k)
            o += k
            p += k
    out[0] = s.o
    n[0] = o - s.o
    s.o = o
    s.p = p + 1
    return 2


cdef inline bint _is(const unsigned char* p, const char* lit, int n) noexcept nogil:
    """``p`` starts with the ``n`` bytes of ``lit``; reads no further than the first mismatch."""
    cdef int i
    for i in range(n):
        if p[i] != <unsigned char>lit[i]:
            return False
    return True


cdef int _key(Scan* s, int expected) noexcept nogil:
    """The member name at ``s.p`` (its opening quote) as M_*, ``s.p`` moved past the colon
    and the whitespace after it; -1 for any other name (a name written with an escape
    included: it declines, as an unknown member does) or a missing colon.  ``expected``: the
    name tried first (import lines repeat one member order, so this guess is nearly always
    right and cheap)."""
    cdef const unsigned char* k = s.p + 1
    cdef const unsigned char* p
    cdef int m = -1
    cdef unsigned char c
    if _is(k, _NAMES[expected], _NAME_N[expected]):
        m = expected
    else:
        c = k[0]  # told apart by the first letter
        if c == 105:
            m = M_INDEX
        elif c == 116:
            m = M_TYPE if k[1] == 121 else M_TTL
        elif c == 100:
            m = M_DATA
        elif c == 112:
            m = M_PERMS
        elif c == 104:
            m = M_HANDLE
        elif c == 118:
            m = M_VALUES if k[1] == 97 and k[2] == 108 and k[3] == 117 and k[4] == 101 and \
                k[5] == 115 else M_VALUE  # fmt: skip
        elif c == 102:
            m = M_FORMAT
        else:
            return -1
        if not _is(k, _NAMES[m], _NAME_N[m]):
            return -1
    p = _ws(k + _NAME_N[m])
    if p[0] != 58:  # :
        return -1
    s.p = _ws(p + 1)
    return m


cdef bint _int(Scan* s, long long* out) noexcept nogil:
    """The JSON integer at ``s.p``: optional '-', then 0 or [1-9][0-9]{0,9}.  Declines a
    fraction or exponent (orjson gives a float), a leading zero (an error), "-0" (orjson's 0:
    a spelling not worth the doubt) and more than 10 digits (outside every int32 range)."""
    cdef const unsigned char* p = s.p
    cdef bint neg = p[0] == 45
    cdef long long x = 0
    cdef int k = 0
    if neg:
        p += 1
    if p[0] == 48:
        if neg:
            return False
        p += 1
    else:
        while 48 <= p[0] <= 57:
            if k == 10:
                return False
            x = x * 10 + (p[0] - 48)
            p += 1
            k += 1
        if k == 0:
            return False
    if p[0] == 46 or p[0] == 101 or p[0] == 69 or 48 <= p[0] <= 57:
        return False
    out[0] = -x if neg else x
    s.p = p
    return True


cdef inline int _next_member(Scan* s, unsigned char close) noexcept nogil:
    """After a member or element: 1 at a comma (``s.p`` moved to the next), 0 at ``close``
    (``s.p`` moved past it), -1 otherwise."""
    s.p = _ws(s.p)
    if s.p[0] == 44:
        s.p = _ws(s.p + 1)
        return 1
    if s.p[0] == close:
        s.p += 1
        return 0
    return -1


cdef int _data_object(Scan* s, const unsigned char** d, Py_ssize_t* dl) noexcept:
    """Exactly {"format": "string", "value": <string>} at ``s.p``, members in either order:
    0 if not, else the value's ``_string`` result."""
    cdef int m, more, seen = 0, r = 0
    cdef const unsigned char* f
    cdef Py_ssize_t fl
    s.p = _ws(s.p + 1)
    while True:
        if s.p[0] != 34:
            return 0
        m = _key(s, M_VALUE if seen else M_FORMAT)
        if (m != M_FORMAT and m != M_VALUE) or seen & (1 << m) or s.p[0] != 34:
            return 0
        seen |= 1 << m
        if m == M_FORMAT:
            if not _string(s, &f, &fl) or fl != 6 or memcmp(f, b"string", 6) != 0:
                return 0
        else:
            r = _string(s, d, dl)
            if not r:
                return 0
        more = _next_member(s, 125)
        if more < 0:
            return 0
        if more == 0:
            return r if seen == (1 << M_FORMAT) | (1 << M_VALUE) else 0


# The member guessed after each one (M_OTHER: the first) in a value: orjson's order of a
# value built as {"index", "type", "data", ...}.
cdef int _NEXT_MEMBER[6]
_NEXT_MEMBER[:] = [M_INDEX, M_TYPE, M_DATA, M_TTL, M_PERMS, M_INDEX]


cdef int _scan_value(Scan* s, JValue* v, long long reserved_index) except -1:
    """One value object at ``s.p`` into ``v``, checked as ``_read_value`` checks a dict:
    1 taken, 0 declined."""
    cdef int m = M_OTHER, more, r, seen = 0, plain = 1
    cdef const unsigned char* ps
    cdef Py_ssize_t pn, i
    v.ttl = DEFAULT_TTL
    v.perms = DEFAULT_PERMISSIONS
    s.p = _ws(s.p + 1)
    while True:
        if s.p[0] != 34:
            return 0
        m = _key(s, _NEXT_MEMBER[m])
        if m < M_INDEX or m > M_PERMS or seen & (1 << m):
            return 0
        seen |= 1 << m
        if m == M_INDEX:
            if not _int(s, &v.index):
                return 0
        elif m == M_TYPE:
            r = _string(s, &v.t, &v.tl) if s.p[0] == 34 else 0
            if not r:
                return 0
            plain |= r
        elif m == M_DATA:
            if s.p[0] == 34:
                r = _string(s, &v.d, &v.dl)
            elif s.p[0] == 123:
                r = _data_object(s, &v.d, &v.dl)
            else:
                r = 0
            if not r:
                return 0
            plain |= r
        elif m == M_TTL:
            if s.p[0] == 110:  # null: the default
                if s.p[1] != 117 or s.p[2] != 108 or s.p[3] != 108:
                    return 0
                s.p += 4
            elif not _int(s, &v.ttl):
                return 0
        else:
            if s.p[0] != 34 or not _string(s, &ps, &pn):
                return 0
            v.perms = _perms(ps, pn)
        more = _next_member(s, 125)
        if more < 0:
            return 0
        if more == 0:
            break
    if (seen & 0x0E) != 0x0E:  # index, type and data
        return 0
    v.measured = plain == 1
    if v.measured:
        v.tx = v.dx = 0
    for i in range(v.tl):  # a structured type (see _read_value): only non-ASCII or "HS_..."
        if v.t[i] >= 0x80:
            break
    else:
        if not _hs_(v.t, v.tl):
            return _finish(v, reserved_index)
    if PyUnicode_DecodeUTF8(<const char*>v.t, v.tl, NULL).upper() in _STRUCTURED:
        return 0
    return _finish(v, reserved_index)


cdef bint _server_time(object now, unsigned int* t) noexcept:
    """``now`` as ``pack_json_values`` takes it: an exact int in 0..2^31-1."""
    cdef int overflow = 0
    cdef long long x
    if not PyLong_CheckExact(now):
        return False
    x = PyLong_AsLongLongAndOverflow(now, &overflow)
    if overflow or x < 0 or x > 0x7FFFFFFF:
        return False
    t[0] = <unsigned int>x
    return True


cdef object _encode_line(bytes line, unsigned int t, bytes now_text, long long reserved_index,
                         bint case_sensitive, bytes under):
    """One line scanned and encoded.  ``under`` None: ``encode_jsonl_line``'s answer, (key,
    handle, blob) or None.  ``under`` bytes: (key, blob), or None also for a key that does not
    start with ``under`` (found before the record is written); no handle str is made."""
    cdef Scan s
    cdef unsigned char scratch[STACK_SCRATCH]
    cdef JValue stack[STACK_VALUES]
    cdef JValue* v = stack
    cdef JValue* grown
    cdef Py_ssize_t n = 0, cap = STACK_VALUES, un
    cdef const unsigned char* end
    cdef const unsigned char* h = NULL
    cdef Py_ssize_t hl = 0
    cdef int m, more, seen = 0
    cdef object key, blob
    s.p = <const unsigned char*>PyBytes_AS_STRING(line)
    s.size = PyBytes_GET_SIZE(line)
    end = s.p + s.size
    s.buf = s.o = NULL
    s.stack = scratch
    s.heap = False
    try:
        s.p = _ws(s.p)
        if s.p[0] != 123:
            return None
        s.p = _ws(s.p + 1)
        while True:
            if s.p[0] != 34:
                return None
            m = _key(&s, M_VALUES if seen else M_HANDLE)
            if (m != M_HANDLE and m != M_VALUES) or seen & (1 << m):
                return None
            seen |= 1 << m
            if m == M_HANDLE:
                if s.p[0] != 34 or not _string(&s, &h, &hl):
                    return None
            else:
                if s.p[0] != 91:  # [
                    return None
                s.p = _ws(s.p + 1)
                while True:
                    if s.p[0] != 123:  # an element that is not an object, or no element
                        return None
                    if n == cap:
                        if cap == MAX_VALUES:
                            return None
                        cap = min(cap * 4, MAX_VALUES)
                        if v == stack:
                            grown = <JValue*>PyMem_Malloc(cap * sizeof(JValue))
                            if grown != NULL:
                                memcpy(grown, stack, n * sizeof(JValue))
                        else:
                            grown = <JValue*>PyMem_Realloc(v, cap * sizeof(JValue))
                        if grown == NULL:
                            raise MemoryError()
                        v = grown
                    if not _scan_value(&s, &v[n], reserved_index):
                        return None
                    n += 1
                    more = _next_member(&s, 93)
                    if more < 0:
                        return None
                    if more == 0:
                        break
            more = _next_member(&s, 125)
            if more < 0:
                return None
            if more == 0:
                break
        if _ws(s.p) != end or seen != (1 << M_HANDLE) | (1 << M_VALUES):
            return None
        key = _normalize(h, hl, case_sensitive)
        if key is None:
            return None
        if under is not None:
            un = PyBytes_GET_SIZE(under)
            if PyBytes_GET_SIZE(key) < un or memcmp(PyBytes_AS_STRING(key),
                                                    PyBytes_AS_STRING(under), un) != 0:
                return None
        blob = _emit(v, n, t, now_text)
        if blob is None:
            return None
        if under is not None:
            return key, blob
        return key, PyUnicode_DecodeUTF8(<const char*>h, hl, NULL), blob
    finally:
        if v != stack:
            PyMem_Free(v)
        if s.heap:
            PyMem_Free(s.buf)


def encode_jsonl_line(bytes line not None, object now, bytes now_text not None,
                      long long reserved_index, bint case_sensitive):
    cdef unsigned int t
    if not _server_time(now, &t):
        return None
    return _encode_line(line, t, now_text, reserved_index, case_sensitive, None)


def encode_jsonl_lines(object parts, object now, bytes now_text not None,
                       long long reserved_index, bint case_sensitive, bytes under not None,
                       Py_ssize_t max_line):
    cdef unsigned int t = 0
    cdef bint timed = _server_time(now, &t)
    cdef Py_ssize_t i, j, size
    cdef const char* p
    cdef list pairs = [], taken = [], other = []
    cdef object line, r
    if not PyList_CheckExact(parts):
        raise TypeError(f"encode_jsonl_lines() needs a list, not {type(parts).__name__}")
    for i in range(PyList_GET_SIZE(parts)):
        line = <object>PyList_GET_ITEM(parts, i)
        if not PyBytes_CheckExact(line):
            raise TypeError(f"encode_jsonl_lines() needs bytes lines, not {type(line).__name__}")
        p = PyBytes_AS_STRING(line)
        size = PyBytes_GET_SIZE(line)
        j = 0
        while j < size and (p[j] == 32 or p[j] == 9 or p[j] == 13):
            j += 1
        if j == size:
            continue  # blank
        r = None
        if timed and size <= max_line:
            r = _encode_line(line, t, now_text, reserved_index, case_sensitive, under)
        if r is None:
            other.append(i)
        else:
            pairs.append(r)
            taken.append(i)
    return pairs, taken, other


# -- one CSV import record (contract: _hotpath_py.encode_csv_row) ------------------------------

cdef Py_ssize_t _position(object x, Py_ssize_t n) noexcept:
    """An exact int in 0..n-1, else -1."""
    cdef int overflow = 0
    cdef long long p
    if not PyLong_CheckExact(x):
        return -1
    p = PyLong_AsLongLongAndOverflow(x, &overflow)
    if overflow or p < 0 or p >= n:
        return -1
    return <Py_ssize_t>p


cdef object _csv_values(object row, Py_ssize_t nrow, object columns, Py_ssize_t ncol, JValue* v,
                        long long reserved_index, unsigned int t, bytes now_text):
    """The record of a row's non-empty cells (``v`` holds ``ncol`` JValues), or None."""
    cdef Py_ssize_t c, pos, k = 0
    cdef int overflow = 0
    cdef object col, cell, vtype, ttl, index
    for c in range(ncol):
        col = <object>PyTuple_GET_ITEM(columns, c)
        if not PyTuple_CheckExact(col) or PyTuple_GET_SIZE(col) != 4:
            return None
        pos = _position(<object>PyTuple_GET_ITEM(col, 0), nrow)
        if pos < 0:
            return None
        cell = <object>PyList_GET_ITEM(row, pos)
        if not PyUnicode_CheckExact(cell):
            return None
        if PyUnicode_GET_LENGTH(cell) == 0:
            continue  # an empty cell: no value, its column unchecked (as the reference)
        if k == MAX_VALUES:
            return None
        index = <object>PyTuple_GET_ITEM(col, 1)
        if not PyLong_CheckExact(index):
            return None
        v[k].index = PyLong_AsLongLongAndOverflow(index, &overflow)
        if overflow:
            return None
        vtype = <object>PyTuple_GET_ITEM(col, 2)
        v[k].t = _utf8(vtype, &v[k].tl)
        if v[k].t == NULL:
            return None
        if not PyUnicode_IS_ASCII(vtype) or _hs_(v[k].t, v[k].tl):
            if vtype.upper() in _STRUCTURED:
                return None
        v[k].d = _utf8(cell, &v[k].dl)
        if v[k].d == NULL:
            return None  # a lone surrogate
        ttl = <object>PyTuple_GET_ITEM(col, 3)
        v[k].ttl = DEFAULT_TTL
        if ttl is not None:
            if not PyLong_CheckExact(ttl):
                return None
            v[k].ttl = PyLong_AsLongLongAndOverflow(ttl, &overflow)
            if overflow:
                return None
        v[k].perms = DEFAULT_PERMISSIONS
        v[k].measured = False
        if not _finish(&v[k], reserved_index):
            return None
        k += 1
    if k == 0:
        return None
    return _emit(v, k, t, now_text)


def encode_csv_row(object row, object handle_at, object columns, object now,
                   bytes now_text not None, long long reserved_index, bint case_sensitive):
    cdef unsigned int t
    cdef Py_ssize_t nrow, ncol, pos, hl
    cdef const unsigned char* h
    cdef JValue stack[STACK_VALUES]
    cdef JValue* v = stack
    cdef object key, blob, handle
    if not PyList_CheckExact(row) or not PyTuple_CheckExact(columns):
        return None
    if not _server_time(now, &t):
        return None
    nrow = PyList_GET_SIZE(row)
    pos = _position(handle_at, nrow)
    if pos < 0:
        return None
    handle = <object>PyList_GET_ITEM(row, pos)
    h = _utf8(handle, &hl)
    if h == NULL or hl == 0:
        return None
    ncol = PyTuple_GET_SIZE(columns)
    if ncol > STACK_VALUES:
        v = <JValue*>PyMem_Malloc(ncol * sizeof(JValue))
        if v == NULL:
            raise MemoryError()
    try:
        blob = _csv_values(row, nrow, columns, ncol, v, reserved_index, t, now_text)
    finally:
        if v != stack:
            PyMem_Free(v)
    if blob is None:
        return None
    key = _normalize(h, hl, case_sensitive)
    if key is None:
        return None
    return key, blob


# -- CSV import lines (contract: _hotpath_py.encode_csv_lines) -------------------------------
# One pass over a line's bytes cuts it into cells — pointers into the line, or for a quoted cell
# holding '""' into a scratch buffer (never more bytes than the line) — checking its UTF-8 on
# the way; the cells then become values as encode_csv_row makes them, from column facts found
# once per call.  The scan's stop tables include NUL: CPython ends every bytes object with one,
# so a scan stops at the line's end without a bounds check (a NUL inside the line is text, as
# the csv module reads it, and the scan goes on).

cdef struct CsvCol:
    Py_ssize_t pos
    long long index
    long long ttl
    const unsigned char* t  # the type's UTF-8, held by the caller's columns tuple
    Py_ssize_t tl
    Py_ssize_t tx  # bytes its JSON escaping adds
    bint ok  # a non-empty cell here can be a value (_csv_values' checks of index, type, ttl)

cdef struct Cell:
    const unsigned char* p
    Py_ssize_t n
    bint plain  # no byte JSON escapes or calls binary: its measure is known (0)

cdef struct CsvScan:
    Cell* cells  # ``width`` of them
    Py_ssize_t width
    unsigned char* buf  # the scratch buffer (NULL until a line needs it)
    Py_ssize_t cap
    Py_ssize_t limit  # csv.field_size_limit(), at least 0: the most characters in a cell

# Bytes a quoted cell's scan stops at: '"', non-ASCII, and the bytes that make a cell not
# ``plain`` (C0 controls, NUL and CR among them, backslash, DEL); an unquoted cell's: also ','.
cdef unsigned char _CSV_BARE[256]
cdef unsigned char _CSV_QUOTED[256]
for _c in range(256):
    _CSV_QUOTED[_c] = 1 if _c < 0x20 or _c == 34 or _c == 92 or _c >= 0x7F else 0
    _CSV_BARE[_c] = 1 if _CSV_QUOTED[_c] or _c == 44 else 0

cdef enum:
    STACK_CELLS = 32


cdef bint _over_limit(const Cell* c, Py_ssize_t limit) noexcept nogil:
    """More characters (UTF-8 sequences) in the cell than the csv module's field limit."""
    cdef Py_ssize_t i, chars
    if c.n <= limit:
        return False
    chars = c.n
    for i in range(c.n):
        if (c.p[i] & 0xC0) == 0x80:
            chars -= 1
    return chars > limit


cdef bint _csv_cells(CsvScan* s, const unsigned char* p, Py_ssize_t size) noexcept:
    """Cut a line of ``size`` >= 1 bytes into exactly ``s.width`` cells as the csv module reads
    it (Excel dialect, strict), with every '"' in a quoted cell; False for any other line."""
    cdef const unsigned char* end = p + size
    cdef const unsigned char* start
    cdef unsigned char* o = NULL  # the next unescaped byte in s.buf; NULL: none in this line
    cdef unsigned char* copy
    cdef unsigned char c
    cdef Py_ssize_t n = 0
    cdef int k
    cdef bint plain
    if p[0] == 13:  # the csv module reads a record of no cells, or fails
        return False
    while True:
        if n == s.width:
            return False
        plain = True
        if p[0] == 34:  # a quoted cell
            p += 1
            start = p
            copy = NULL
            while True:
                while not _CSV_QUOTED[p[0]]:
                    p += 1
                c = p[0]
                if c == 34:
                    if p[1] != 34:
                        break  # the closing quote
                    if copy == NULL:  # the first '""': unescape from here on
                        if o == NULL:
                            if s.cap < size:
                                o = <unsigned char*>PyMem_Realloc(s.buf, size)
                                if o == NULL:
                                    return False
                                s.buf, s.cap = o, size
                            o = s.buf
                        copy = o
                        plain = False
                    memcpy(o, start, p + 1 - start)
                    o += p + 1 - start
                    p += 2
                    start = p
                elif c >= 0x80:
                    k = _utf8_seq(p)
                    if k == 0:
                        return False
                    p += k
                elif c == 0 and p == end:
                    return False  # the cell goes on past the line
                else:
                    plain = False
                    p += 1
            if copy == NULL:
                s.cells[n].p = start
                s.cells[n].n = p - start
            else:
                memcpy(o, start, p - start)
                o += p - start
                s.cells[n].p = copy
                s.cells[n].n = o - copy
            p += 1
            c = p[0]
            if p != end and c != 44 and c != 13:
                return False  # text after the closing quote
        else:
            start = p
            while True:
                while not _CSV_BARE[p[0]]:
                    p += 1
                c = p[0]
                if c >= 0x80:
                    k = _utf8_seq(p)
                    if k == 0:
                        return False
                    p += k
                elif c == 34 or c == 44 or c == 13 or (c == 0 and p == end):
                    break
                elif c == 10:  # not in a line (contract), but the csv module would end a row
                    return False
                else:
                    plain = False
                    p += 1
            if c == 34:
                return False  # a quote in an unquoted cell: the csv module's text, not ours
            s.cells[n].p = start
            s.cells[n].n = p - start
        s.cells[n].plain = plain
        if _over_limit(&s.cells[n], s.limit):
            return False
        n += 1
        if p == end:
            break
        if c == 13:  # the record ends; only more CRs may follow
            p += 1
            while p != end:
                if p[0] != 13:
                    return False
                p += 1
            break
        p += 1  # the comma
    return n == s.width


cdef bint _blanks_then_hash(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """``str.lstrip()`` of the UTF-8 ``p`` starts with '#': skips what ``str.isspace`` calls
    white space (ASCII 9-13, 28-32; U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
    U+202F, U+205F, U+3000)."""
    cdef Py_ssize_t i = 0
    cdef unsigned char c
    while i < n:
        c = p[i]
        if 9 <= c <= 13 or 28 <= c <= 32:
            i += 1
        elif c == 0xC2 and (p[i + 1] == 0x85 or p[i + 1] == 0xA0):
            i += 2
        elif c == 0xE1 and p[i + 1] == 0x9A and p[i + 2] == 0x80:
            i += 3
        elif c == 0xE2 and p[i + 1] == 0x80 and (p[i + 2] <= 0x8A or p[i + 2] == 0xA8
                                                 or p[i + 2] == 0xA9 or p[i + 2] == 0xAF):
            i += 3  # U+2000-U+200A (0x80-0x8A: a continuation byte is >= 0x80), U+2028/9, U+202F
        elif c == 0xE2 and p[i + 1] == 0x81 and p[i + 2] == 0x9F:
            i += 3
        elif c == 0xE3 and p[i + 1] == 0x80 and p[i + 2] == 0x80:
            i += 3
        else:
            break
    return i < n and p[i] == 35


cdef object _csv_record(CsvScan* s, const unsigned char* p, Py_ssize_t size, Py_ssize_t handle_at,
                        const CsvCol* cols, Py_ssize_t ncol, JValue* v, unsigned int t,
                        bytes now_text, long long reserved_index, bint case_sensitive,
                        bytes under):
    """One line → ``(key, blob)``, or None (the caller's line)."""
    cdef Py_ssize_t j, k = 0, un
    cdef const Cell* cell
    cdef unsigned char c
    cdef object key, blob
    if not _csv_cells(s, p, size):
        return None
    cell = &s.cells[0]
    if cell.n:  # a comment (registry.import_lines): '#' first, or after blanks
        c = cell.p[0]
        if c == 35 or (c <= 32 and _blanks_then_hash(cell.p, cell.n)):
            return None
    for j in range(s.width):
        if s.cells[j].n:
            break
    else:
        return None  # every cell empty
    if s.cells[handle_at].n == 0:
        return None
    for j in range(ncol):
        cell = &s.cells[cols[j].pos]
        if cell.n == 0:
            continue
        if not cols[j].ok or k == MAX_VALUES:
            return None
        v[k].index = cols[j].index
        v[k].t = cols[j].t
        v[k].tl = cols[j].tl
        v[k].d = cell.p
        v[k].dl = cell.n
        v[k].ttl = cols[j].ttl
        v[k].perms = DEFAULT_PERMISSIONS
        v[k].measured = cell.plain  # else _finish measures type and data
        if v[k].measured:
            v[k].tx = cols[j].tx
            v[k].dx = 0
        if not _finish(&v[k], reserved_index):
            return None
        k += 1
    if k == 0:
        return None
    cell = &s.cells[handle_at]
    key = _normalize(cell.p, cell.n, case_sensitive)
    if key is None:
        return None
    un = PyBytes_GET_SIZE(under)
    if PyBytes_GET_SIZE(key) < un or memcmp(PyBytes_AS_STRING(key), PyBytes_AS_STRING(under),
                                            un) != 0:  # fmt: skip
        return None
    blob = _emit(v, k, t, now_text)
    if blob is None:
        return None
    return key, blob


cdef bint _csv_columns(object columns, Py_ssize_t width, CsvCol* cols) noexcept:
    """``columns`` (a tuple, of ``ncol`` items) into ``cols``; False when ``encode_csv_row``
    would decline every row of ``width`` cells (a column not a 4-tuple, a position out of
    range).  A column whose index, type or ttl it would decline is marked not ``ok``."""
    cdef Py_ssize_t j
    cdef int overflow = 0
    cdef object col, index, vtype, ttl
    for j in range(PyTuple_GET_SIZE(columns)):
        col = <object>PyTuple_GET_ITEM(columns, j)
        if not PyTuple_CheckExact(col) or PyTuple_GET_SIZE(col) != 4:
            return False
        cols[j].pos = _position(<object>PyTuple_GET_ITEM(col, 0), width)
        if cols[j].pos < 0:
            return False
        cols[j].ok = False
        index = <object>PyTuple_GET_ITEM(col, 1)
        if not PyLong_CheckExact(index):
            continue
        cols[j].index = PyLong_AsLongLongAndOverflow(index, &overflow)
        if overflow:
            continue
        vtype = <object>PyTuple_GET_ITEM(col, 2)
        cols[j].t = _utf8(vtype, &cols[j].tl)
        if cols[j].t == NULL:
            continue
        if not PyUnicode_IS_ASCII(vtype) or _hs_(cols[j].t, cols[j].tl):
            if vtype.upper() in _STRUCTURED:
                continue
        cols[j].tx = _escape_extra(cols[j].t, cols[j].tl, False)
        ttl = <object>PyTuple_GET_ITEM(col, 3)
        cols[j].ttl = DEFAULT_TTL
        if ttl is not None:
            if not PyLong_CheckExact(ttl):
                continue
            cols[j].ttl = PyLong_AsLongLongAndOverflow(ttl, &overflow)
            if overflow:
                continue
        cols[j].ok = True
    return True


def encode_csv_lines(object parts, object width, object handle_at, object columns, object now,
                     bytes now_text not None, long long reserved_index, bint case_sensitive,
                     bytes under not None, Py_ssize_t max_line):
    cdef CsvScan s
    cdef Cell cell_stack[STACK_CELLS]
    cdef CsvCol col_stack[STACK_VALUES]
    cdef JValue v_stack[STACK_VALUES]
    cdef CsvCol* cols = col_stack
    cdef JValue* v = v_stack
    cdef unsigned int t = 0
    cdef Py_ssize_t i, n, size, at = -1, ncol = 0, limit, longest = 0
    cdef bint usable
    cdef list pairs = [], taken = [], other = []
    cdef object line, r
    if not PyList_CheckExact(parts):
        raise TypeError(f"encode_csv_lines() needs a list, not {type(parts).__name__}")
    if not PyLong_CheckExact(width):
        raise TypeError(f"encode_csv_lines() needs an int width, not {type(width).__name__}")
    n = PyList_GET_SIZE(parts)
    for i in range(n):
        line = <object>PyList_GET_ITEM(parts, i)
        if not PyBytes_CheckExact(line):
            raise TypeError(f"encode_csv_lines() needs bytes lines, not {type(line).__name__}")
        longest = max(longest, PyBytes_GET_SIZE(line))
    s.cells = cell_stack
    s.buf = NULL
    s.cap = 0
    s.width = 0
    limit = csv.field_size_limit()
    s.limit = limit if limit > 0 else 0
    # A line of ``width`` cells holds ``width`` - 1 commas: a wider header takes no line (and
    # the cells' array stays within 16 bytes a byte of the longest line).
    usable = (_server_time(now, &t) and PyTuple_CheckExact(columns) and 0 < width
              and width - 1 <= min(max_line, longest))  # fmt: skip
    try:
        if usable:
            s.width = width
            at = _position(handle_at, s.width)
            ncol = PyTuple_GET_SIZE(columns)
            if s.width > STACK_CELLS:
                s.cells = <Cell*>PyMem_Malloc(s.width * sizeof(Cell))
            if ncol > STACK_VALUES:
                cols = <CsvCol*>PyMem_Malloc(ncol * sizeof(CsvCol))
                v = <JValue*>PyMem_Malloc(ncol * sizeof(JValue))
            if s.cells == NULL or cols == NULL or v == NULL:
                raise MemoryError()
            usable = at >= 0 and _csv_columns(columns, s.width, cols)
        for i in range(n):
            line = <object>PyList_GET_ITEM(parts, i)
            size = PyBytes_GET_SIZE(line)
            if size == 0:
                continue  # blank
            r = None
            if usable and size <= max_line:
                r = _csv_record(&s, <const unsigned char*>PyBytes_AS_STRING(line), size, at, cols,
                                ncol, v, t, now_text, reserved_index, case_sensitive, under)
            if r is None:
                other.append(i)
            else:
                pairs.append(r)
                taken.append(i)
        return pairs, taken, other
    finally:
        if s.cells != cell_stack:
            PyMem_Free(s.cells)
        if cols != col_stack:
            PyMem_Free(cols)
        if v != v_stack:
            PyMem_Free(v)
        PyMem_Free(s.buf)


# -- DNS fast path (contract: _hotpath_py.dns_answer) -----------------------------------------
# One pass over the stored record checks every value as resolver.record.unpack reads it and
# notes, per RR to emit, where its type and data are and its RDATA length; the response is
# then sized exactly, and written into one bytes object (or its TC form, if it is too long).
# The TXT text is written behind its place and moved forward chunk by chunk, which leaves
# room for the strings' length bytes without a scratch copy.

cdef enum:
    DNS_TXT = 16
    DNS_NAPTR = 35
    DNS_URI = 256
    DNS_MAX_RDATA = 65000
    DNS_MAX_TTL = 0x7FFFFFFF
    DNS_MIN_UDP = 512
    DNS_MAX_TCP = 65535
    DNS_MAX_NAME = 255
    DNS_MAX_APEX = 251
    NAPTR_ORDER_BASE = 100
    NAPTR_PREFERENCE = 10
    TTL_ABSOLUTE = 1
    DNS_LABELS = 128  # labels of a name <= 255 octets (127), and the one read past that
    TXT_TYPE_B64 = 1
    TXT_DATA_B64 = 2

cdef long long DNS_NOW_LIMIT = (<long long>1) << 62

_CONSTANTS.update({
    "DNS_TXT": DNS_TXT, "DNS_NAPTR": DNS_NAPTR, "DNS_URI": DNS_URI,
    "DNS_MAX_RDATA": DNS_MAX_RDATA, "DNS_MAX_TTL": DNS_MAX_TTL, "DNS_MIN_UDP": DNS_MIN_UDP,
    "DNS_MAX_TCP": DNS_MAX_TCP, "DNS_MAX_NAME": DNS_MAX_NAME, "DNS_MAX_APEX": DNS_MAX_APEX,
    "NAPTR_ORDER_BASE": NAPTR_ORDER_BASE, "NAPTR_PREFERENCE": NAPTR_PREFERENCE,
    "TTL_ABSOLUTE": TTL_ABSOLUTE, "DNS_NOW_LIMIT": DNS_NOW_LIMIT,
})

# Byte classes: 1 letter or digit, 2 '-', 4 '_' (labels); 8 URI scheme character after the
# first; 16 RFC 3986 unreserved or reserved character; 32 hex digit.
cdef unsigned char _DNSC[256]
for _c in range(256):
    _DNSC[_c] = 0
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
    _DNSC[_c] |= 1 | 8 | 16
for _c in b"0123456789abcdefABCDEF":
    _DNSC[_c] |= 32
_DNSC[45] |= 2
_DNSC[95] |= 4
for _c in b"+.-":
    _DNSC[_c] |= 8
for _c in b"-._~:/?#[]@!$&'()*+,;=":
    _DNSC[_c] |= 16

cdef const char* _B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
cdef const char* _HEXU = b"0123456789ABCDEF"


cdef class DnsZone:
    """Contract: ``_hotpath_py.DnsZone``."""
    cdef readonly bytes apex_wire
    cdef readonly bint case_sensitive
    cdef readonly int max_udp

    def __init__(self, apex_wire, case_sensitive=False, max_udp=1232):
        if not isinstance(apex_wire, bytes):
            raise TypeError("apex_wire must be bytes")
        if type(max_udp) is not int or not DNS_MIN_UDP <= max_udp <= DNS_MAX_TCP:
            raise ValueError(f"max_udp must be an int {DNS_MIN_UDP}..{DNS_MAX_TCP}")
        if not _apex_ok(apex_wire):
            raise ValueError("apex_wire: a wire-form name of labels 1-63 of [A-Za-z0-9_-]")
        self.apex_wire = apex_wire.lower()
        self.case_sensitive = bool(case_sensitive)
        self.max_udp = max_udp


cdef bint _apex_ok(bytes a):
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(a)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(a), p = 0, i, length
    if n <= 0 or n > DNS_MAX_APEX:
        return False
    while p < n:
        length = s[p]
        if length == 0:
            return p == n - 1
        if length > 63 or p + 1 + length >= n:
            return False
        for i in range(p + 1, p + 1 + length):
            if not (_DNSC[s[i]] & 7):
                return False
        p += 1 + length
    return False


cdef struct DnsRR:
    const unsigned char* type  # in the stored record
    Py_ssize_t tl
    const unsigned char* data
    Py_ssize_t dl
    long long index
    long long ttl  # this value's TTL, clamped
    Py_ssize_t text  # TXT: the text's length; URI, NAPTR: the URI's (non-ASCII %-encoded)
    Py_ssize_t rdlen
    int flags  # TXT_TYPE_B64, TXT_DATA_B64
    int position  # URI priority - 1, NAPTR order - NAPTR_ORDER_BASE


cdef inline int _field(const unsigned char* b, Py_ssize_t* p, Py_ssize_t end) noexcept nogil:
    """The length of the u32-length-prefixed field at ``*p`` (RFC 3652 §2.2 UTF8-String /
    byte string) and ``*p`` moved past it; -1 (``*p`` unspecified) when it overruns ``end``."""
    cdef int n
    if p[0] < 0 or p[0] + 4 > end:
        return -1
    n = <int>_u32(b + p[0])
    if n < 0 or p[0] + 4 + n > end:
        return -1
    p[0] += 4 + n
    return n


cdef inline Py_ssize_t _b64_len(Py_ssize_t n) noexcept nogil:
    return (n + 2) // 3 * 4


cdef unsigned char* _put_b64(unsigned char* o, const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef unsigned int x
    while n - i >= 3:
        x = (<unsigned int>s[i] << 16) | (<unsigned int>s[i + 1] << 8) | s[i + 2]
        o[0] = _B64[x >> 18]
        o[1] = _B64[(x >> 12) & 63]
        o[2] = _B64[(x >> 6) & 63]
        o[3] = _B64[x & 63]
        o += 4
        i += 3
    if n - i == 1:
        x = <unsigned int>s[i] << 16
        o[0] = _B64[x >> 18]
        o[1] = _B64[(x >> 12) & 63]
        o[2] = 61
        o[3] = 61
        o += 4
    elif n - i == 2:
        x = (<unsigned int>s[i] << 16) | (<unsigned int>s[i + 1] << 8)
        o[0] = _B64[x >> 18]
        o[1] = _B64[(x >> 12) & 63]
        o[2] = _B64[(x >> 6) & 63]
        o[3] = 61
        o += 4
    return o


cdef inline bint _txt_cont(const DnsRR* r, Py_ssize_t pos) noexcept nogil:
    """Is byte ``pos`` of the TXT text a UTF-8 continuation byte?  Only the raw type (after
    "type=") and the raw data (the text's tail) can hold one."""
    cdef Py_ssize_t ds
    if not (r.flags & TXT_TYPE_B64) and 5 <= pos < 5 + r.tl:
        return (r.type[pos - 5] & 0xC0) == 0x80
    ds = r.text - r.dl
    if not (r.flags & TXT_DATA_B64) and pos >= ds:
        return (r.data[pos - ds] & 0xC0) == 0x80
    return False


cdef inline Py_ssize_t _txt_cut(const DnsRR* r, Py_ssize_t pos) noexcept nogil:
    """End of the character-string starting at ``pos``: ≤ 255 bytes, not inside a sequence."""
    cdef Py_ssize_t e = pos + 255
    if e >= r.text:
        return r.text
    while _txt_cont(r, e):
        e -= 1
    return e


cdef void _txt_size(DnsRR* r, bint type_control) noexcept nogil:
    """Fill ``text``, ``flags`` and ``rdlen`` of a TXT RR (answers.txt_text, _txt_rdata);
    ``type_control``: the type has a control character."""
    cdef Py_ssize_t pos = 0, strings = 0
    r.flags = 0
    if type_control or memchr(r.type, 59, r.tl) != NULL:
        r.flags |= TXT_TYPE_B64
        r.text = 9 + _b64_len(r.tl)
    else:
        r.text = 5 + r.tl
    r.text += 7 + _int_len(r.index) + 1
    if _valid_utf8_no_controls(r.data, r.dl):
        r.text += 5 + r.dl
    else:
        r.flags |= TXT_DATA_B64
        r.text += 9 + _b64_len(r.dl)
    while True:
        pos = _txt_cut(r, pos)
        strings += 1
        if pos >= r.text:
            break
    r.rdlen = r.text + strings


cdef unsigned char* _put_txt(unsigned char* o, const DnsRR* r) noexcept nogil:
    """Write the TXT RDATA: the text goes behind its place, then each string moves forward
    to make room for its length byte (never over bytes not yet moved)."""
    cdef Py_ssize_t strings = r.rdlen - r.text, pos = 0, e, i = 0
    cdef unsigned char* w = o + strings
    if r.flags & TXT_TYPE_B64:
        w = _put_lit(w, b"type.b64=", 9)
        w = _put_b64(w, r.type, r.tl)
    else:
        w = _put_lit(w, b"type=", 5)
        memcpy(w, r.type, r.tl)
        w += r.tl
    w = _put_lit(w, b";index=", 7)
    w = _put_int(w, r.index, _int_len(r.index))
    if r.flags & TXT_DATA_B64:
        w = _put_lit(w, b";data.b64=", 10)
        w = _put_b64(w, r.data, r.dl)
    else:
        w = _put_lit(w, b";data=", 6)
        memcpy(w, r.data, r.dl)
    while pos < r.text:
        e = _txt_cut(r, pos)
        memmove(o + i + pos + 1, o + strings + pos, e - pos)
        o[i + pos] = <unsigned char>(e - pos)
        i += 1
        pos = e
    return o + r.rdlen


cdef Py_ssize_t _uri_len(const unsigned char* s, Py_ssize_t n, Py_ssize_t* bangs) noexcept nogil:
    """answers._uri_of for UTF-8 data without control characters: the length of the URI it
    gives (each non-ASCII byte becomes %XX), or -1 when it is no absolute URI.  ``bangs``: the
    '!' and '\\' in it (each escaped in a NAPTR regexp)."""
    cdef Py_ssize_t i = 1, m = n
    cdef unsigned char c
    bangs[0] = 0
    if n == 0 or not (_DNSC[s[0]] & 1) or s[0] <= 57:  # a letter
        return -1
    while i < n and (_DNSC[s[i]] & 8):
        i += 1
    if i >= n or s[i] != 58:
        return -1
    i += 1
    if i == n:
        return -1
    while i < n:
        c = s[i]
        if c >= 0x80:
            m += 2
        elif c == 37:
            if i + 2 >= n or not (_DNSC[s[i + 1]] & 32) or not (_DNSC[s[i + 2]] & 32):
                return -1
            i += 2
        elif not (_DNSC[c] & 16):
            return -1
        elif c == 33 or c == 92:
            bangs[0] += 1
        i += 1
    return m


cdef unsigned char* _put_uri(unsigned char* o, const unsigned char* s, Py_ssize_t n,
                             bint escape) noexcept nogil:
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = s[i]
        if c >= 0x80:
            o[0] = 37
            o[1] = _HEXU[c >> 4]
            o[2] = _HEXU[c & 15]
            o += 3
        else:
            if escape and (c == 33 or c == 92):
                o[0] = 92
                o += 1
            o[0] = c
            o += 1
    return o


cdef inline bint _plain_label(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if not (_DNSC[s[0]] & 1) or not (_DNSC[s[n - 1]] & 1):
        return False
    for i in range(1, n - 1):
        if not (_DNSC[s[i]] & 3):
            return False
    return not (n >= 4 and s[2] == 45 and s[3] == 45)


cdef inline unsigned char _low(unsigned char c) noexcept nogil:
    if c >= 65 and c <= 90:
        return c + 32
    return c


def dns_answer(query, object txn, object records_db, object prefixes_db, DnsZone zone not None,
               long long now, bint tcp=False, list held=None, RecordCache cache=None,
               dict tally=None):
    """Contract: ``_hotpath_py.dns_answer``."""
    cdef bytes q = query if type(query) is bytes else bytes(query)
    cdef Tally t
    cdef object out
    if now > DNS_NOW_LIMIT or now < -DNS_NOW_LIMIT:
        raise OverflowError("now out of range")
    t.counts = <PyObject*>tally
    t.n = 0
    out = _dns_answer(<const unsigned char*>PyBytes_AS_STRING(q), PyBytes_GET_SIZE(q), txn,
                      records_db, prefixes_db, zone, now, tcp, held, cache,
                      &t if tally is not None else NULL)
    if t.n:
        _tally_flush(&t)
    return out


cdef object _dns_answer(const unsigned char* q, Py_ssize_t n, object txn, object records_db,
                        object prefixes_db, DnsZone zone, long long now, bint tcp, list held,
                        RecordCache cache, Tally* tally):
    cdef int starts[DNS_LABELS]
    cdef int nl = 0, own, i, j, qtype, ar
    cdef Py_ssize_t p, name_end, end, t, aw, limit, klen, size, k = 0, total, bangs = 0
    cdef Py_ssize_t d, wo, wl, jo, jl, v, vend, tl, dl, rc, hl, positions = 0
    cdef const unsigned char* a
    cdef const unsigned char* b
    cdef unsigned char* o
    cdef Layout L
    cdef DnsRR stack[STACK_SPANS]
    cdef DnsRR* rr = stack
    cdef DnsRR* r
    cdef bint control = False, type_control = False, sorted_
    cdef long long ttl, min_ttl = DNS_MAX_TTL
    cdef object key, blob
    cdef bytes out
    # Header and question (RFC 1035 §4.1.1-2): a query, QD 1, nothing but an OPT after it.
    if n < 17 or (q[2] & 0xFA) or q[4] or q[5] != 1 or q[6] or q[7] or q[8] or q[9] or q[10]:
        return None
    ar = q[11]
    if ar > 1:
        return None
    p = 12
    while True:
        if p >= n or p - 12 >= DNS_MAX_NAME:
            return None
        if q[p] == 0:
            break
        if q[p] > 63:
            return None  # a compression pointer or an extended label type
        starts[nl] = <int>p
        nl += 1
        p += 1 + q[p]
    name_end = p + 1
    end = name_end + 4
    if end > n:
        return None
    qtype = (q[name_end] << 8) | q[name_end + 1]
    if q[name_end + 2] != 0 or q[name_end + 3] != 1:
        return None
    if qtype != DNS_TXT and qtype != DNS_URI and qtype != DNS_NAPTR:
        return None
    if ar:  # OPT (RFC 6891 §6.1.2): root owner, type 41, version 0, no options
        if (n != end + 11 or q[end] != 0 or q[end + 1] != 0 or q[end + 2] != 41
                or q[end + 6] != 0 or q[end + 9] != 0 or q[end + 10] != 0):
            return None
        limit = (q[end + 3] << 8) | q[end + 4]
        if limit > zone.max_udp:
            limit = zone.max_udp
        if limit < DNS_MIN_UDP:
            limit = DNS_MIN_UDP
    elif n != end:
        return None
    else:
        limit = DNS_MIN_UDP
    if tcp:
        limit = DNS_MAX_TCP
    # The apex: the name's last labels; at least two plain labels above it.
    a = <const unsigned char*>PyBytes_AS_STRING(zone.apex_wire)
    aw = PyBytes_GET_SIZE(zone.apex_wire)
    t = name_end - aw
    if t < 12:
        return None
    if t == p:
        own = nl
    else:
        own = -1
        for i in range(nl):
            if starts[i] == t:
                own = i
                break
        if own < 0:
            return None
    for i in range(aw):
        if _low(q[t + i]) != a[i]:
            return None
    if own < 2:
        return None
    klen = 0
    for i in range(own):
        if not _plain_label(q + starts[i] + 1, q[starts[i]]):
            return None
        klen += q[starts[i]] + 1
    if own == 3 and q[starts[2]] == 1 and q[starts[2] + 1] == 48 and q[starts[1]] == 2 \
            and _up(q[starts[1] + 1]) == 78 and _up(q[starts[1] + 2]) == 65:  # fmt: skip
        return None  # 0.NA/…: the general path's
    # The key: prefix segments right to left, '/', the suffix (mapping.from_dns_name).
    key = PyBytes_FromStringAndSize(NULL, klen - 1)
    o = <unsigned char*>PyBytes_AS_STRING(key)
    for i in range(own - 1, 0, -1):
        for j in range(q[starts[i]]):
            o[j] = _up(q[starts[i] + 1 + j])
        o += q[starts[i]]
        o[0] = 46 if i > 1 else 47
        o += 1
    for j in range(q[starts[0]]):
        o[j] = _low(q[starts[0] + 1 + j]) if zone.case_sensitive else _up(q[starts[0] + 1 + j])

    blob = _lookup(key, txn, records_db, prefixes_db, held, cache)
    if blob is None or blob is _MISS:
        return None  # not held / no such identifier: REFUSED or NXDOMAIN, the general path's
    b = <const unsigned char*>PyBytes_AS_STRING(blob)
    if not _layout(b, PyBytes_GET_SIZE(blob), &L) or L.wlen < 4 or _u32(b + L.wstart) != L.n:
        return None
    try:
        if L.n > STACK_SPANS:
            rr = <DnsRR*>PyMem_Malloc(L.n * sizeof(DnsRR))
            if rr == NULL:
                raise MemoryError()
        # Every value as resolver.record.unpack reads it (a failure there is a SERVFAIL).
        for i in range(L.n):
            d = HEADER_SIZE + DIR_SIZE * i
            wo = _u32(b + d)
            wl = _u32(b + d + 4)
            jo = _u32(b + d + 8)
            jl = _u32(b + d + 12)
            if wo + wl > L.wlen or jo + jl > L.jlen or wl < VALUE_MIN:
                return None
            v = L.wstart + wo
            vend = v + wl
            p = v + VALUE_TYPE
            tl = _field(b, &p, vend)  # type
            dl = _field(b, &p, vend)  # data
            if tl < 0 or dl < 0 or p + 4 > vend:
                return None
            rc = <int>_u32(b + p)
            p += 4
            if rc < 0 or rc > MAX_VALUES:
                return None
            for j in range(rc):
                if p + 4 > vend:
                    return None
                hl = <int>_u32(b + p)
                if hl < 0 or p + 8 + hl > vend or not _utf8_ok(b + p + 4, hl, &control):
                    return None
                p += 8 + hl
            if p != vend or not _utf8_ok(b + v + VALUE_TYPE + 4, tl, &type_control):
                return None
            if not (b[v + VALUE_PERMS] & PERM_PUBLIC_READ):
                continue
            r = &rr[k]
            r.type = b + v + VALUE_TYPE + 4
            r.tl = tl
            r.data = r.type + tl + 4
            r.dl = dl
            r.index = <int>_u32(b + v)
            if qtype == DNS_TXT:
                _txt_size(r, type_control)
            else:
                if tl != 3 or _up(r.type[0]) != 85 or _up(r.type[1]) != 82 \
                        or _up(r.type[2]) != 76:  # fmt: skip
                    continue  # not "URL"
                if not _valid_utf8_no_controls(r.data, dl):
                    continue
                r.text = _uri_len(r.data, dl, &bangs)
                if r.text < 0:
                    continue
                if qtype == DNS_URI:
                    r.rdlen = 4 + r.text
                else:
                    if 7 + r.text + bangs > 255:
                        continue  # no NAPTR regexp can hold it
                    r.rdlen = 12 + 7 + r.text + bangs
                r.position = <int>positions
                positions += 1
            if r.rdlen > DNS_MAX_RDATA:
                continue
            ttl = <int>_u32(b + v + 9)
            if b[v + 8] == TTL_ABSOLUTE:
                ttl -= now
            if ttl < 0:
                ttl = 0
            elif ttl > DNS_MAX_TTL:
                ttl = DNS_MAX_TTL
            if ttl < min_ttl:
                min_ttl = ttl
            k += 1
        if k == 0:
            return None  # NODATA: the general path's
        if qtype == DNS_TXT:  # equal RDATA would be one RR in dnspython's RRset: decline
            sorted_ = True
            for i in range(1, k):
                if rr[i].index <= rr[i - 1].index:
                    sorted_ = False
                    break
            if not sorted_:
                for i in range(1, k):
                    for j in range(i):
                        if rr[i].index == rr[j].index:
                            return None
        # The response (RFC 1035 §4.1), or its TC form when over the limit.
        size = end - 12
        total = 12 + size + (11 if ar else 0)
        for i in range(k):
            total += 12 + rr[i].rdlen
        if total > limit:
            k = 0
            total = 12 + size + (11 if ar else 0)
        out = PyBytes_FromStringAndSize(NULL, total)
        o = <unsigned char*>PyBytes_AS_STRING(out)
        o[0] = q[0]
        o[1] = q[1]
        o[2] = 0x84 | (q[2] & 0x01) | (0 if k else 0x02)  # QR, AA, RD echoed; TC
        o[3] = q[3] & 0x10  # CD echoed
        o[4] = 0
        o[5] = 1
        o[6] = <unsigned char>(k >> 8)
        o[7] = <unsigned char>k
        o[8] = o[9] = o[10] = 0
        o[11] = <unsigned char>ar
        memcpy(o + 12, q + 12, size)
        o += 12 + size
        for i in range(k):
            r = &rr[i]
            o[0] = 0xC0
            o[1] = 0x0C
            o[2] = <unsigned char>(qtype >> 8)
            o[3] = <unsigned char>qtype
            o[4] = 0
            o[5] = 1
            _put32(o + 6, <unsigned int>min_ttl)
            o[10] = <unsigned char>(r.rdlen >> 8)
            o[11] = <unsigned char>r.rdlen
            o += 12
            if qtype == DNS_TXT:
                o = _put_txt(o, r)
            elif qtype == DNS_URI:
                o[0] = <unsigned char>((r.position + 1) >> 8)
                o[1] = <unsigned char>(r.position + 1)
                o[2] = 0
                o[3] = 1
                o = _put_uri(o + 4, r.data, r.dl, False)
            else:
                o[0] = <unsigned char>((NAPTR_ORDER_BASE + r.position) >> 8)
                o[1] = <unsigned char>(NAPTR_ORDER_BASE + r.position)
                o[2] = 0
                o[3] = NAPTR_PREFERENCE
                o = _put_lit(o + 4, b"\x01U\x03URL", 6)
                o[0] = <unsigned char>(r.rdlen - 12)
                o = _put_lit(o + 1, b"!^.*$!", 6)
                o = _put_uri(o, r.data, r.dl, True)
                o[0] = 33
                o[1] = 0
                o += 2
        if ar:
            o[0] = 0
            o[1] = 0
            o[2] = 41
            o[3] = <unsigned char>(zone.max_udp >> 8)
            o[4] = <unsigned char>zone.max_udp
            o[5] = 0
            o[6] = 0
            o[7] = q[n - 4] & 0x80  # DO (RFC 3225 §3)
            o[8] = o[9] = o[10] = 0
        if tally != NULL:
            _tally_add(tally, key, OUT_OK)  # the TC form too: the record was found
        return out
    finally:
        if rr != stack:
            PyMem_Free(rr)


# -- UDP datagram pump -----------------------------------------------------------------------
# recvmmsg/sendmmsg move a burst of datagrams per system call; each one _handle_answer takes
# is answered without leaving C but for the store lookup.  Other systems read and write one
# datagram a call (same results, more calls).

cdef extern from *:
    """
    #include <errno.h>
    #include <string.h>
    #include <sys/types.h>
    #include <sys/socket.h>
    #include <netinet/in.h>
    #include <arpa/inet.h>

    #define IDN_BATCH 64
    #define IDN_DGRAM 65536

    typedef struct {
        unsigned char *bufs;                          /* IDN_BATCH x IDN_DGRAM */
        struct sockaddr_storage peers[IDN_BATCH];
        socklen_t peerlens[IDN_BATCH];
        size_t lens[IDN_BATCH];
    #ifdef __linux__
        struct mmsghdr in[IDN_BATCH], out[IDN_BATCH];
        struct iovec iniov[IDN_BATCH], outiov[IDN_BATCH];
    #endif
        const void *outbuf[IDN_BATCH];
        size_t outlen[IDN_BATCH];
        int outpeer[IDN_BATCH];
    } idn_pump;

    /* Read up to max datagrams without blocking: their count, or -errno when none was read. */
    static int idn_recv(idn_pump *p, int fd, int max) {
    #ifdef __linux__
        int i, n;
        for (i = 0; i < max; i++) {
            p->iniov[i].iov_base = p->bufs + (size_t)i * IDN_DGRAM;
            p->iniov[i].iov_len = IDN_DGRAM;
            memset(&p->in[i].msg_hdr, 0, sizeof p->in[i].msg_hdr);
            p->in[i].msg_hdr.msg_iov = &p->iniov[i];
            p->in[i].msg_hdr.msg_iovlen = 1;
            p->in[i].msg_hdr.msg_name = &p->peers[i];
            p->in[i].msg_hdr.msg_namelen = sizeof p->peers[i];
        }
        do n = recvmmsg(fd, p->in, max, MSG_DONTWAIT, NULL); while (n < 0 && errno == EINTR);
        if (n < 0) return -errno;
        for (i = 0; i < n; i++) {
            p->lens[i] = p->in[i].msg_len;
            p->peerlens[i] = p->in[i].msg_hdr.msg_namelen;
        }
        return n;
    #else
        int i;
        for (i = 0; i < max; i++) {
            ssize_t got;
            p->peerlens[i] = sizeof p->peers[i];
            do got = recvfrom(fd, p->bufs + (size_t)i * IDN_DGRAM, IDN_DGRAM, MSG_DONTWAIT,
                              (struct sockaddr *)&p->peers[i], &p->peerlens[i]);
            while (got < 0 && errno == EINTR);
            if (got < 0) return i ? i : -errno;
            p->lens[i] = (size_t)got;
        }
        return i;
    #endif
    }

    /* Send the n queued replies; those the socket does not take now are dropped (UDP).
       Returns how many were dropped. */
    static int idn_send(idn_pump *p, int fd, int n) {
        int i, off = 0, sent;
    #ifdef __linux__
        for (i = 0; i < n; i++) {
            p->outiov[i].iov_base = (void *)p->outbuf[i];
            p->outiov[i].iov_len = p->outlen[i];
            memset(&p->out[i].msg_hdr, 0, sizeof p->out[i].msg_hdr);
            p->out[i].msg_hdr.msg_iov = &p->outiov[i];
            p->out[i].msg_hdr.msg_iovlen = 1;
            p->out[i].msg_hdr.msg_name = &p->peers[p->outpeer[i]];
            p->out[i].msg_hdr.msg_namelen = p->peerlens[p->outpeer[i]];
        }
        while (off < n) {
            sent = sendmmsg(fd, p->out + off, n - off, MSG_DONTWAIT);
            if (sent < 0) {
                if (errno == EINTR) continue;
                off++;  /* this one failed (full buffer, gone route): drop it, try the rest */
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return n - off + 1;
                continue;
            }
            off += sent;
        }
        return 0;
    #else
        int dropped = 0;
        (void)off; (void)sent;
        for (i = 0; i < n; i++) {
            ssize_t r;
            do r = sendto(fd, p->outbuf[i], p->outlen[i], MSG_DONTWAIT,
                          (struct sockaddr *)&p->peers[p->outpeer[i]], p->peerlens[p->outpeer[i]]);
            while (r < 0 && errno == EINTR);
            if (r < 0) dropped++;
        }
        return dropped;
    #endif
    }

    /* The peer as text for Python's address tuple; family, port, flowinfo, scope id. */
    static int idn_peer(idn_pump *p, int i, char *host, size_t hostlen, unsigned int *port,
                        unsigned int *flowinfo, unsigned int *scope) {
        struct sockaddr_storage *ss = &p->peers[i];
        if (ss->ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)ss;
            if (!inet_ntop(AF_INET, &a->sin_addr, host, hostlen)) return -1;
            *port = ntohs(a->sin_port);
            return AF_INET;
        }
        if (ss->ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
            if (!inet_ntop(AF_INET6, &a->sin6_addr, host, hostlen)) return -1;
            *port = ntohs(a->sin6_port);
            *flowinfo = ntohl(a->sin6_flowinfo);
            *scope = a->sin6_scope_id;
            return AF_INET6;
        }
        return -1;
    }
    """
    enum:
        IDN_BATCH
        IDN_DGRAM
        AF_INET
        AF_INET6
    ctypedef struct idn_pump:
        unsigned char* bufs
        size_t lens[1]
        const void* outbuf[1]
        size_t outlen[1]
        int outpeer[1]
    int idn_recv(idn_pump* p, int fd, int max) nogil
    int idn_send(idn_pump* p, int fd, int n) nogil
    int idn_peer(idn_pump* p, int i, char* host, size_t hostlen, unsigned int* port,
                 unsigned int* flowinfo, unsigned int* scope) nogil

cdef extern from "stdlib.h":
    void* calloc(size_t n, size_t size) nogil
    void free(void* p) nogil

cdef extern from "errno.h":
    int EAGAIN
    int EWOULDBLOCK

BATCH = IDN_BATCH


cdef class UdpPump:
    """Contract: ``_hotpath_py.UdpPump``."""
    cdef idn_pump* p
    cdef int fd
    cdef object sock
    cdef public RecordCache cache
    cdef readonly DnsZone dns
    cdef readonly bint hand_back
    cdef public dict tally
    cdef public Py_ssize_t dropped

    def __cinit__(self, sock, RecordCache cache=None, DnsZone dns=None, bint hand_back=False,
                  dict tally=None):
        self.p = <idn_pump*>calloc(1, sizeof(idn_pump))
        if self.p == NULL:
            raise MemoryError()
        self.p.bufs = <unsigned char*>calloc(IDN_BATCH, IDN_DGRAM)
        if self.p.bufs == NULL:
            free(self.p)
            self.p = NULL
            raise MemoryError()
        self.sock = sock
        self.cache = cache
        self.dns = dns
        self.hand_back = hand_back
        self.tally = tally
        self.fd = sock.fileno()
        self.dropped = 0

    def __dealloc__(self):
        if self.p != NULL:
            free(self.p.bufs)
            free(self.p)

    cdef object _address(self, int i):
        cdef char host[64]
        cdef unsigned int port = 0, flowinfo = 0, scope = 0
        cdef int family = idn_peer(self.p, i, host, sizeof(host), &port, &flowinfo, &scope)
        if family == AF_INET:
            return (host.decode("ascii"), port)
        if family == AF_INET6:
            return (host.decode("ascii"), port, flowinfo, scope)
        return None

    def run(self, object env, object records_db, object prefixes_db, bint case_sensitive=False):
        cdef int n, i, queued = 0
        cdef bint fits
        cdef long long now
        cdef const unsigned char* d
        cdef object out, addr, txn
        cdef list keep = [], rest = [], held = [None]
        cdef dict tally = self.tally  # counted in ``t``, added to the dict once per burst
        cdef Tally t
        cdef Tally* tp = &t if tally is not None else NULL
        t.counts = <PyObject*>tally
        t.n = 0
        if self.fd < 0 or self.sock.fileno() != self.fd:
            raise OSError(9, "UdpPump: socket closed")
        with nogil:
            n = idn_recv(self.p, self.fd, IDN_BATCH)
        if n < 0:
            if -n == EAGAIN or -n == EWOULDBLOCK:
                return 0, rest
            raise OSError(-n, "recvmmsg")
        now = <long long>time(NULL)
        txn = env.begin()  # after the burst arrived: it sees every write made before it was sent
        try:
            if self.cache is not None:
                self.cache.sync(txn)
            for i in range(n):
                d = self.p.bufs + <size_t>i * IDN_DGRAM
                try:
                    if self.dns is not None:
                        out = _dns_answer(d, self.p.lens[i], txn, records_db, prefixes_db,
                                          self.dns, now, False, held, self.cache, tp)
                        fits = out is not None  # within the client's UDP limit already
                    else:
                        out = _handle_answer(d, self.p.lens[i], txn, records_db, prefixes_db,
                                             case_sensitive, held, self.cache, tp)
                        fits = out is not None and PyBytes_GET_SIZE(out) <= UDP_PACKET
                except Exception:
                    out = None  # the general path answers it, and reports the failure
                    fits = False
                if fits and not self.hand_back:
                    keep.append(out)
                    self.p.outbuf[queued] = PyBytes_AS_STRING(out)
                    self.p.outlen[queued] = PyBytes_GET_SIZE(out)
                    self.p.outpeer[queued] = i
                    queued += 1
                    continue
                addr = self._address(i)
                if addr is None:
                    continue  # not an IP peer: nothing to answer
                rest.append((PyBytes_FromStringAndSize(<const char*>d, self.p.lens[i]), addr,
                             out))  # fmt: skip
        finally:
            try:
                txn.abort()
            finally:
                if t.n:
                    _tally_flush(&t)
        if queued:
            with nogil:
                i = idn_send(self.p, self.fd, queued)
            self.dropped += i
        return n, rest
