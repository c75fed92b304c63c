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
import hashlib

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memcmp, memcpy

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
    return (<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) | (<unsigned int>p[2] << 8) | p[3]


cdef inline void _put32(unsigned char* p, unsigned int x) noexcept nogil:
    p[0] = <unsigned char>(x >> 24)
    p[1] = <unsigned char>(x >> 16)
    p[2] = <unsigned char>(x >> 8)
    p[3] = <unsigned char>x


cdef inline unsigned char _up(unsigned char c) noexcept nogil:
    if c >= 97 and c <= 122:
        return c - 32
    return c


cdef int _valid_utf8_no_controls(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Strict UTF-8 (as Python's codec: no overlongs, surrogates or > U+10FFFF), no C0/DEL/C1."""
    cdef Py_ssize_t i = 0
    cdef unsigned char c, c1
    cdef int need
    while i < n:
        c = s[i]
        if c < 0x80:
            if c < 0x20 or c == 0x7F:
                return 0
            i += 1
            continue
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
        if i + need >= n:
            return 0  # truncated sequence
        c1 = s[i + 1]
        if (c1 & 0xC0) != 0x80:
            return 0
        if c == 0xC2 and c1 < 0xA0:
            return 0  # C1 control U+0080..U+009F
        if c == 0xE0 and c1 < 0xA0:
            return 0
        if c == 0xED and c1 >= 0xA0:
            return 0  # surrogates
        if c == 0xF0 and c1 < 0x90:
            return 0
        if c == 0xF4 and c1 >= 0x90:
            return 0
        if need >= 2 and (s[i + 2] & 0xC0) != 0x80:
            return 0
        if need == 3 and (s[i + 3] & 0xC0) != 0x80:
            return 0
        i += need + 1
    return 1


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


cdef inline bint _eq_ci(const unsigned char* a, const unsigned char* b, Py_ssize_t n) noexcept nogil:
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


cdef object _http_answer(bytes blob, bytes handle, object types, object indexes):
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
            return b"".join((HEAD_200, esc, TAIL_ERR))
        return _json_hit(esc, b, spans, k, total, False)
    finally:
        if spans != stack:
            PyMem_Free(spans)


def http_resolve(bytes handle, object types, object indexes, bint public_only, object txn,
                 object records_db, object prefixes_db, bint case_sensitive=False):
    cdef object key, blob
    if not public_only:
        return None
    key = normalize_key(handle, case_sensitive)
    if key is None:
        return None
    blob = _lookup(key, txn, records_db, prefixes_db)
    if blob is None:
        return None
    if blob is _MISS:
        return b"".join((HEAD_100, json_escape(handle), TAIL_ERR))
    return _http_answer(blob, handle, types, indexes)


# -- Handle protocol -------------------------------------------------------------------------

def handle_resolve(data, object txn, object records_db, object prefixes_db,
                   bint case_sensitive=False, RecordCache cache=None):
    cdef bytes req = data if type(data) is bytes else bytes(data)
    return _handle_answer(<const unsigned char*>PyBytes_AS_STRING(req), PyBytes_GET_SIZE(req),
                          txn, records_db, prefixes_db, case_sensitive, None, cache)


cdef object _handle_answer(const unsigned char* d, Py_ssize_t n, object txn, object records_db,
                           object prefixes_db, bint case_sensitive, list held,
                           RecordCache cache):
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
        return out
    finally:
        if spans != stack:
            PyMem_Free(spans)


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
    cdef idn_pump* p
    cdef int fd
    cdef object sock
    cdef public RecordCache cache
    cdef public Py_ssize_t dropped

    def __cinit__(self, sock, RecordCache cache=None):
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
        cdef const unsigned char* d
        cdef object out, addr, txn
        cdef list keep = [], rest = [], held = [None]
        if self.fd < 0 or self.sock.fileno() != self.fd:
            raise OSError(9, "UdpPump: socket closed")
        with nogil:
            n = idn_recv(self.p, self.fd, IDN_BATCH)
        if n < 0:
            if -n == EAGAIN or -n == EWOULDBLOCK:
                return 0, rest
            raise OSError(-n, "recvmmsg")
        txn = env.begin()  # after the burst arrived: it sees every write made before it was sent
        try:
            if self.cache is not None:
                self.cache.sync(txn)
            for i in range(n):
                d = self.p.bufs + <size_t>i * IDN_DGRAM
                try:
                    out = _handle_answer(d, self.p.lens[i], txn, records_db, prefixes_db,
                                         case_sensitive, held, self.cache)
                except Exception:
                    out = None  # the general path answers it, and reports the failure
                if out is not None and PyBytes_GET_SIZE(out) <= UDP_PACKET:
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
            txn.abort()
        if queued:
            with nogil:
                i = idn_send(self.p, self.fd, queued)
            self.dropped += i
        return n, rest
