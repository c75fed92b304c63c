# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython twin of ``native._hotpath_py``: same names, signatures and output bytes.

The contracts are documented once, in ``_hotpath_py``; this file only makes them fast.
Imports nothing of ours but the shared constants (restated as C constants below and checked
against ``native.constants`` by tests/parity).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
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

cdef bytes HEAD_OK = b'{"responseCode":1,"handle":"'
cdef bytes MID_OK = b'","values":'
cdef bytes HEAD_100 = b'{"responseCode":100,"handle":"'
cdef bytes HEAD_200 = b'{"responseCode":200,"values":[],"handle":"'
cdef bytes TAIL_ERR = b'"}'


cdef inline unsigned int _u32(const unsigned char* p) noexcept nogil:
    return (<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) | (<unsigned int>p[2] << 8) | p[3]


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


cpdef object normalize_key(bytes handle, bint case_sensitive=False):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(handle)
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(handle)
    cdef Py_ssize_t slash = -1, i, plen, out_len
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


cdef inline bint _eq_ci(const unsigned char* a, const unsigned char* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if _up(a[i]) != _up(b[i]):
            return False
    return True


cdef bint _type_matches(const unsigned char* vt, Py_ssize_t vl, tuple types):
    # Reference Util.isParentTypeInArray: "X." matches X and X.*; else exact; ASCII-CI.
    cdef bytes t
    cdef const unsigned char* tp
    cdef Py_ssize_t tl
    for t in types:
        tp = <const unsigned char*>PyBytes_AS_STRING(t)
        tl = PyBytes_GET_SIZE(t)
        if tl > 0 and tp[tl - 1] == 46:
            if (vl >= tl or vl == tl - 1) and _eq_ci(vt, tp, tl if vl >= tl else vl):
                return True
        elif vl == tl and _eq_ci(vt, tp, vl):
            return True
    return False


cdef object _answer(bytes blob, bytes handle, object types, object indexes):
    cdef Py_ssize_t size = PyBytes_GET_SIZE(blob)
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(blob)
    cdef unsigned int n, wlen, jlen, wo, wl, jo, jl, tl, i
    cdef Py_ssize_t wstart, jstart, d, v, t0
    cdef int index
    cdef bint selected
    cdef bint filtering = bool(types) or bool(indexes)
    cdef bytes esc
    cdef list parts
    if size < HEADER_SIZE or b[0] != LAYOUT_VERSION:
        return None
    n = (<unsigned int>b[2] << 8) | b[3]
    wlen = _u32(b + 4)
    jlen = _u32(b + 8)
    wstart = HEADER_SIZE + DIR_SIZE * <Py_ssize_t>n
    jstart = wstart + wlen
    if jstart + <Py_ssize_t>jlen != size:
        return None
    esc = json_escape(handle)
    if not filtering and (b[1] & ALL_PUBLIC):
        return b"".join((HEAD_OK, esc, MID_OK, blob[jstart:], b"}"))
    parts = []
    for i in range(n):
        d = HEADER_SIZE + DIR_SIZE * i
        wo = _u32(b + d)
        wl = _u32(b + d + 4)
        jo = _u32(b + d + 8)
        jl = _u32(b + d + 12)
        if wl < VALUE_MIN or <Py_ssize_t>wo + wl > wlen or <Py_ssize_t>jo + jl > jlen:
            return None
        v = wstart + wo
        if not (b[v + VALUE_PERMS] & PERM_PUBLIC_READ):
            continue
        if filtering:
            selected = False
            if indexes:
                index = <int>_u32(b + v)
                if index in indexes:
                    selected = True
            if not selected and types:
                tl = _u32(b + v + VALUE_TYPE)
                t0 = v + VALUE_TYPE + 4
                if t0 + <Py_ssize_t>tl > v + wl:
                    return None
                selected = _type_matches(b + t0, tl, tuple(types))
            if not selected:
                continue
        parts.append(blob[jstart + jo : jstart + jo + jl])
    if not parts:
        return b"".join((HEAD_200, esc, TAIL_ERR))
    return b"".join((HEAD_OK, esc, MID_OK, b"[", b",".join(parts), b"]}"))


def http_resolve(bytes handle, object types, object indexes, bint public_only, object txn,
                 object records_db, object prefixes_db, bint case_sensitive=False):
    cdef object key, blob
    cdef Py_ssize_t slash, i, kn
    cdef const unsigned char* k
    if not public_only:
        return None
    key = normalize_key(handle, case_sensitive)
    if key is None:
        return None
    k = <const unsigned char*>PyBytes_AS_STRING(key)
    kn = PyBytes_GET_SIZE(key)
    # Positional arguments: py-lmdb parses keywords slowly (~0.4 µs a call).
    if kn > 5 and memcmp(k, b"0.NA/", 5) == 0:
        blob = txn.get(key[5:], None, prefixes_db)
        if blob is None:
            return None
    else:
        slash = 0
        for i in range(kn):
            if k[i] == 47:
                slash = i
                break
        if txn.get(key[:slash], None, prefixes_db) is None:
            return None
        blob = txn.get(key, None, records_db)
        if blob is None:
            return b"".join((HEAD_100, json_escape(handle), TAIL_ERR))
    if type(blob) is not bytes:
        blob = bytes(blob)
    return _answer(blob, handle, types, indexes)
