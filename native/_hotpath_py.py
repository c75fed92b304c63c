"""Pure-Python twin of the hot path: the normative reference for ``native._hotpath``.

Every function here has a Cython twin with the same name, signature and output bytes; the
parity tests hold them together.  Imports the standard library only: the stored record layout
is restated in ``native.constants`` and checked against ``resolver.record`` by a test.
"""

from __future__ import annotations

import re

from native.constants import (
    ALL_PUBLIC, DIR_SIZE, HEADER_SIZE, LAYOUT_VERSION, MAX_HANDLE, MAX_PREFIX, NA_PREFIX,
    PERM_PUBLIC_READ, VALUE_MIN, VALUE_PERMS, VALUE_TYPE,
)  # fmt: skip

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
    key = normalize_key(handle, case_sensitive)
    if key is None:
        return None
    if key[:5] == b"0.NA/":
        blob = txn.get(key[5:], None, prefixes_db)
        if blob is None:
            return None
    else:
        if txn.get(key[: key.find(b"/")], None, prefixes_db) is None:
            return None
        blob = txn.get(key, None, records_db)
        if blob is None:
            return b'{"responseCode":100,"handle":"' + json_escape(handle) + b'"}'
    return _answer(bytes(blob), handle, types, indexes)


def _answer(blob: bytes, handle: bytes, types, indexes) -> bytes | None:
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
    head = b'{"responseCode":1,"handle":"' + json_escape(handle) + b'","values":'
    if not types and not indexes and flags & ALL_PUBLIC:
        return head + blob[jstart:] + b"}"
    parts = []
    for i in range(n):
        d = HEADER_SIZE + DIR_SIZE * i
        wo = _I(blob[d : d + 4], "big")
        wl = _I(blob[d + 4 : d + 8], "big")
        jo = _I(blob[d + 8 : d + 12], "big")
        jl = _I(blob[d + 12 : d + 16], "big")
        if wl < VALUE_MIN or wo + wl > wlen or jo + jl > jlen:
            return None
        v = wstart + wo
        if not blob[v + VALUE_PERMS] & PERM_PUBLIC_READ:
            continue
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
        parts.append(blob[jstart + jo : jstart + jo + jl])
    if not parts:
        return b'{"responseCode":200,"values":[],"handle":"' + json_escape(handle) + b'"}'
    return head + b"[" + b",".join(parts) + b"]}"
